package dev.mtltf.demo.coretest;

import dev.mtltf.demo.core.DenseMap;
import dev.mtltf.demo.core.Detection;
import dev.mtltf.demo.core.FrameDecoder;
import dev.mtltf.demo.core.ImageLabel;
import dev.mtltf.demo.core.ModelMetadata;
import dev.mtltf.demo.core.SegmentationMask;
import dev.mtltf.demo.core.SsdDecoder;
import dev.mtltf.demo.core.Tensors;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs the app's model-contract core (dev.mtltf.demo.core) on a desktop JVM against tensors
 * dumped by tests/test_android_core.py, and writes what it decodes next to them.
 *
 *   java -cp CLASSES dev.mtltf.demo.coretest.DecodeHarness --metadata metadata.json FRAME_DIR... [--metadata ...]
 *
 * A FRAME_DIR holds `<output name>.bin` (raw tensor bytes, little endian) for the artifact's
 * outputs, optionally `raw_<task>.bin` (a float32 raw detector output [A, 4 + C + 1]) and
 * `image.rgb` (H * W * 3 bytes). Written there: `java_result.txt` (one line per detection:
 * `det TASK CLASS SCORE YMIN XMIN YMAX XMAX`, one per mask: `mask TASK H W`, one per image label:
 * `label TASK CLASS PROBABILITY`, one per dense map: `map TASK H W`), `java_mask_<task>.bin`
 * (uint8 class ids), `java_map_<task>.argb` (the rendered map, 4 bytes A, R, G, B per pixel),
 * `java_dequant_<output>.bin` (float32),
 * `java_raw_<task>_boxes.bin` / `_scores.bin` (float32), `java_boxes_<task>.bin` (the boxes decoded
 * from a `box_encodings` output, float32) and `java_input.bin` (the input tensor).
 */
public final class DecodeHarness {
    public static void main(String[] args) throws IOException {
        ModelMetadata meta = null;
        int frames = 0;
        for (int i = 0; i < args.length; i++) {
            if ("--metadata".equals(args[i])) {
                meta = ModelMetadata.parse(new String(Files.readAllBytes(Paths.get(args[++i])), StandardCharsets.UTF_8));
            } else if (meta == null) {
                throw new IllegalArgumentException("--metadata must come before the frame folders");
            } else {
                frame(meta, Paths.get(args[i]));
                frames++;
            }
        }
        System.out.println("decoded " + frames + " frames");
    }

    private static void frame(ModelMetadata meta, Path dir) throws IOException {
        Map<String, ByteBuffer> outputs = new LinkedHashMap<>();
        for (ModelMetadata.Output spec : meta.outputs.values()) {
            Path file = dir.resolve(spec.name + ".bin");
            if (Files.exists(file)) {
                ByteBuffer data = read(file);
                outputs.put(spec.name, data);
                write(dir.resolve("java_dequant_" + spec.name + ".bin"), Tensors.toFloat(data, spec));
            }
        }
        FrameDecoder.Result result = new FrameDecoder(meta).decode(outputs);
        StringBuilder text = new StringBuilder();
        for (Map.Entry<String, List<Detection>> e : result.detections.entrySet()) {
            for (Detection d : e.getValue()) {
                text.append("det ").append(e.getKey()).append(' ').append(d).append('\n');
            }
        }
        for (Map.Entry<String, SegmentationMask> e : result.masks.entrySet()) {
            SegmentationMask m = e.getValue();
            text.append("mask ").append(e.getKey()).append(' ').append(m.height).append(' ').append(m.width).append('\n');
            Files.write(dir.resolve("java_mask_" + e.getKey() + ".bin"), m.classIds);
        }
        for (Map.Entry<String, List<ImageLabel>> e : result.labels.entrySet()) {
            for (ImageLabel label : e.getValue()) {
                text.append("label ").append(e.getKey()).append(' ').append(label).append('\n');
            }
        }
        for (Map.Entry<String, DenseMap> e : result.maps.entrySet()) {
            DenseMap m = e.getValue();
            text.append("map ").append(e.getKey()).append(' ').append(m.height).append(' ').append(m.width).append('\n');
            ByteBuffer argb = ByteBuffer.allocate(m.argb.length * 4).order(ByteOrder.BIG_ENDIAN);
            argb.asIntBuffer().put(m.argb);
            Files.write(dir.resolve("java_map_" + e.getKey() + ".argb"), argb.array());
        }
        Files.write(dir.resolve("java_result.txt"), text.toString().getBytes(StandardCharsets.UTF_8));

        for (ModelMetadata.Task task : meta.tasks.values()) {
            ModelMetadata.Output encodings = meta.outputsOf(task.name).get("box_encodings");
            if (encodings != null && outputs.containsKey(encodings.name)) {
                float[] values = Tensors.toFloat(outputs.get(encodings.name), encodings);
                write(dir.resolve("java_boxes_" + task.name + ".bin"),
                        SsdDecoder.decodeBoxes(values, 0, 4, task.anchors, task.boxVariance));
            }
            Path raw = dir.resolve("raw_" + task.name + ".bin");
            if (task.isDetection() && Files.exists(raw)) {
                float[] values = new float[(int) (Files.size(raw) / 4)];
                read(raw).asFloatBuffer().get(values);
                float[][] decoded = SsdDecoder.decode(values, task);
                write(dir.resolve("java_raw_" + task.name + "_boxes.bin"), decoded[0]);
                write(dir.resolve("java_raw_" + task.name + "_scores.bin"), decoded[1]);
            }
        }

        Path image = dir.resolve("image.rgb");
        if (Files.exists(image)) {
            byte[] rgb = Files.readAllBytes(image);
            int[] argb = new int[rgb.length / 3];
            for (int p = 0; p < argb.length; p++) {
                argb[p] = 0xFF000000 | (rgb[3 * p] & 0xFF) << 16 | (rgb[3 * p + 1] & 0xFF) << 8 | (rgb[3 * p + 2] & 0xFF);
            }
            ByteBuffer input = Tensors.allocateInput(meta).order(ByteOrder.LITTLE_ENDIAN);
            Tensors.encodeImage(argb, meta, input);
            byte[] bytes = new byte[input.remaining()];
            input.get(bytes);
            Files.write(dir.resolve("java_input.bin"), bytes);
        }
    }

    private static ByteBuffer read(Path file) throws IOException {
        return ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static void write(Path file, float[] values) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(values);
        Files.write(file, b.array());
    }
}
