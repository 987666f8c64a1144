package dev.mtltf.demo.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Model input encoding and output dequantization, as metadata.json describes them. */
public final class Tensors {
    private Tensors() {
    }

    /** Bytes per element of a metadata dtype name. */
    public static int bytesPerElement(String dtype) {
        switch (dtype) {
            case "uint8":
            case "int8":
                return 1;
            case "float16":
                return 2;
            case "float32":
            case "int32":
                return 4;
            case "int64":
                return 8;
            default:
                throw new IllegalArgumentException("unsupported tensor dtype " + dtype);
        }
    }

    /** A direct, native-order buffer that holds the model input. */
    public static ByteBuffer allocateInput(ModelMetadata meta) {
        int n = meta.inputHeight() * meta.inputWidth() * 3;
        return ByteBuffer.allocateDirect(n * bytesPerElement(meta.inputDtype)).order(ByteOrder.nativeOrder());
    }

    /**
     * Write `argb` (Android Bitmap.getPixels order: row-major 0xAARRGGBB, already resized to the
     * model's input size) into `dst` as the NHWC RGB input tensor of metadata.json's dtype: raw
     * 0..255 values (the model normalizes inside), quantized with the input's scale/zero point
     * for uint8/int8 inputs (full-int8 exports: uint8 scale 1, zero point 0; int8 pixel - 128).
     */
    public static void encodeImage(int[] argb, ModelMetadata meta, ByteBuffer dst) {
        int n = meta.inputHeight() * meta.inputWidth();
        if (argb.length != n) {
            throw new IllegalArgumentException(argb.length + " pixels for a " + meta.inputHeight() + "x"
                    + meta.inputWidth() + " input");
        }
        dst.rewind();
        String dtype = meta.inputDtype;
        for (int p : argb) {
            int[] rgb = {(p >> 16) & 0xFF, (p >> 8) & 0xFF, p & 0xFF};
            for (int v : rgb) {
                if ("uint8".equals(dtype) || "int8".equals(dtype)) {
                    int lowest = "uint8".equals(dtype) ? 0 : -128;
                    int q = Math.round(v / meta.inputScale) + meta.inputZeroPoint;
                    dst.put((byte) Math.max(lowest, Math.min(lowest + 255, q)));
                } else if ("float32".equals(dtype)) {
                    dst.putFloat(v);
                } else {
                    throw new IllegalArgumentException("unsupported input dtype " + dtype);
                }
            }
        }
        dst.rewind();
    }

    /**
     * An output tensor as floats: int8/uint8 outputs read real = scale * (q - zero_point) (in
     * float arithmetic, as NumPy does on the Python side); float32 and int32 are read as is.
     * `data` is positioned at the tensor's first byte, in the tensor's byte order.
     */
    public static float[] toFloat(ByteBuffer data, ModelMetadata.Output spec) {
        int n = spec.size();
        float[] out = new float[n];
        ByteBuffer b = data.duplicate().order(data.order());
        boolean quantized = spec.scale != 0f;
        switch (spec.dtype) {
            case "int8":
                for (int i = 0; i < n; i++) {
                    float q = b.get();
                    out[i] = quantized ? spec.scale * (q - spec.zeroPoint) : q;
                }
                break;
            case "uint8":
                for (int i = 0; i < n; i++) {
                    float q = b.get() & 0xFF;
                    out[i] = quantized ? spec.scale * (q - spec.zeroPoint) : q;
                }
                break;
            case "float32":
                b.asFloatBuffer().get(out);
                break;
            case "int32":
                for (int i = 0; i < n; i++) {
                    out[i] = b.getInt();
                }
                break;
            default:
                throw new IllegalArgumentException(spec.name + ": unsupported output dtype " + spec.dtype);
        }
        return out;
    }
}
