package dev.mtltf.demo;

import android.content.res.AssetFileDescriptor;
import android.content.res.AssetManager;

import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.GpuDelegate;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

import dev.mtltf.demo.core.FrameDecoder;
import dev.mtltf.demo.core.ModelMetadata;
import dev.mtltf.demo.core.Tensors;

/**
 * The LiteRT Interpreter on model.tflite + metadata.json from the app's assets: RGB pixels in,
 * decoded per-task results out (via the Android-free core in dev.mtltf.demo.core).
 */
final class ModelRunner implements Closeable {
    static final String MODEL = "model.tflite";
    static final String METADATA = "metadata.json";
    private static final String SIGNATURE = "serve"; // the signature every mtl-tf artifact has

    final ModelMetadata metadata;
    private final Interpreter interpreter;
    private final GpuDelegate gpu;
    private final FrameDecoder decoder;
    private final ByteBuffer input;
    private final Map<String, Object> outputs = new LinkedHashMap<>();

    ModelRunner(AssetManager assets, int threads, boolean useGpu) throws IOException {
        metadata = ModelMetadata.parse(readText(assets, METADATA));
        Interpreter.Options options = new Interpreter.Options();
        options.setNumThreads(threads);
        options.setUseXNNPACK(true);
        gpu = useGpu ? new GpuDelegate() : null;
        if (gpu != null) {
            options.addDelegate(gpu);
        }
        interpreter = new Interpreter(mapAsset(assets, MODEL), options);
        for (String name : interpreter.getSignatureOutputs(SIGNATURE)) {
            Tensor tensor = interpreter.getOutputTensorFromSignature(name, SIGNATURE);
            outputs.put(name, ByteBuffer.allocateDirect(tensor.numBytes()).order(ByteOrder.nativeOrder()));
        }
        decoder = new FrameDecoder(metadata);
        input = Tensors.allocateInput(metadata);
    }

    /** `argb`: the frame resized to the model input (Bitmap.getPixels order). */
    FrameDecoder.Result run(int[] argb) {
        Tensors.encodeImage(argb, metadata, input);
        Map<String, ByteBuffer> buffers = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : outputs.entrySet()) {
            ByteBuffer b = (ByteBuffer) e.getValue();
            b.rewind();
            buffers.put(e.getKey(), b);
        }
        interpreter.runSignature(Collections.<String, Object>singletonMap(metadata.inputName, input), outputs, SIGNATURE);
        for (ByteBuffer b : buffers.values()) {
            b.rewind();
        }
        return decoder.decode(buffers);
    }

    @Override
    public void close() {
        interpreter.close();
        if (gpu != null) {
            gpu.close();
        }
    }

    private static MappedByteBuffer mapAsset(AssetManager assets, String name) throws IOException {
        try (AssetFileDescriptor fd = assets.openFd(name);
             FileInputStream stream = new FileInputStream(fd.getFileDescriptor())) {
            return stream.getChannel().map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
        }
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
