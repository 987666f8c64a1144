package dev.mtltf.demo;

import android.content.res.AssetManager;

import com.google.ai.edge.litert.Accelerator;
import com.google.ai.edge.litert.CompiledModel;
import com.google.ai.edge.litert.LiteRtException;
import com.google.ai.edge.litert.TensorBuffer;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

import dev.mtltf.demo.core.FrameDecoder;
import dev.mtltf.demo.core.ModelMetadata;
import dev.mtltf.demo.core.Tensors;

/**
 * LiteRT's CompiledModel on model.tflite + metadata.json from the app's assets: RGB pixels in,
 * decoded per-task results out (via the Android-free core in dev.mtltf.demo.core). One input and
 * one output TensorBuffer per tensor of the `serve` signature, named as in metadata.json, made
 * once and reused for every frame.
 */
final class ModelRunner implements Closeable {
    static final String MODEL = "model.tflite";
    static final String METADATA = "metadata.json";
    private static final String SIGNATURE = "serve"; // the signature every mtl-tf artifact has

    final ModelMetadata metadata;
    private final CompiledModel model;
    private final FrameDecoder decoder;
    /** The encoded input (heap, native order: TensorBuffer takes arrays). */
    private final ByteBuffer encoded;
    private final float[] floatInput;
    private final Map<String, TensorBuffer> inputs;
    private final Map<String, TensorBuffer> outputs = new LinkedHashMap<>();

    ModelRunner(AssetManager assets, int threads, boolean useGpu) throws IOException {
        metadata = ModelMetadata.parse(readText(assets, METADATA));
        CompiledModel.Options options = new CompiledModel.Options(useGpu ? Accelerator.GPU : Accelerator.CPU);
        if (!useGpu) {
            options.setCpuOptions(new CompiledModel.CpuOptions(threads, null, null));
        }
        try {
            model = CompiledModel.create(assets, MODEL, options);
            inputs = Collections.singletonMap(metadata.inputName, model.createInputBuffer(metadata.inputName, SIGNATURE));
            for (String name : metadata.outputs.keySet()) {
                outputs.put(name, model.createOutputBuffer(name, SIGNATURE));
            }
        } catch (LiteRtException err) {
            throw new IOException(MODEL + ": LiteRT cannot compile it or make its buffers: " + err.getMessage(), err);
        }
        decoder = new FrameDecoder(metadata);
        int values = metadata.inputHeight() * metadata.inputWidth() * 3;
        encoded = ByteBuffer.allocate(values * Tensors.bytesPerElement(metadata.inputDtype)).order(ByteOrder.nativeOrder());
        floatInput = "float32".equals(metadata.inputDtype) ? new float[values] : null;
    }

    /** `argb`: the frame resized to the model input (Bitmap.getPixels order). */
    FrameDecoder.Result run(int[] argb) {
        Tensors.encodeImage(argb, metadata, encoded);
        Map<String, float[]> values = new LinkedHashMap<>();
        try {
            TensorBuffer input = inputs.get(metadata.inputName);
            if (floatInput != null) {
                encoded.asFloatBuffer().get(floatInput);
                input.writeFloat(floatInput);
            } else {
                input.writeInt8(encoded.array()); // the raw bytes: uint8 inputs too
            }
            model.run(inputs, outputs, SIGNATURE);
            for (Map.Entry<String, TensorBuffer> e : outputs.entrySet()) {
                values.put(e.getKey(), read(e.getValue(), metadata.outputs.get(e.getKey())));
            }
        } catch (LiteRtException err) {
            throw new IllegalStateException("LiteRT failed to run " + MODEL + ": " + err.getMessage(), err);
        }
        return decoder.decodeFloats(values);
    }

    /** An output as floats: int8/uint8 read as raw bytes and dequantized by the core. */
    private static float[] read(TensorBuffer buffer, ModelMetadata.Output spec) throws LiteRtException {
        switch (spec.dtype) {
            case "int8":
            case "uint8":
                return Tensors.toFloat(ByteBuffer.wrap(buffer.readInt8()), spec);
            case "float32":
                return buffer.readFloat();
            case "int32":
                int[] ints = buffer.readInt();
                float[] out = new float[ints.length];
                for (int i = 0; i < ints.length; i++) {
                    out[i] = ints[i];
                }
                return out;
            default:
                throw new IllegalArgumentException(spec.name + ": unsupported output dtype " + spec.dtype);
        }
    }

    @Override
    public void close() {
        for (TensorBuffer b : inputs.values()) {
            b.close();
        }
        for (TensorBuffer b : outputs.values()) {
            b.close();
        }
        model.close();
    }

    private static String readText(AssetManager assets, String name) throws IOException {
        try (InputStream in = assets.open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] chunk = new byte[1 << 16];
            for (int n; (n = in.read(chunk)) > 0; ) {
                out.write(chunk, 0, n);
            }
            return new String(out.toByteArray(), StandardCharsets.UTF_8);
        }
    }
}
