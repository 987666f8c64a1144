package dev.mtltf.demo.core;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One inference's output tensors -> per-task results, following metadata.json (the same steps as
 * export/jetson/run.py and mtl-tf's Predictor): dequantize, then per task by its type, and within
 * a type by output kind. Detection: "boxes" + "scores" (decoded in the graph) -> per-class NMS;
 * "box_encodings" + "scores" (full-int8 artifacts) -> SSD decode in float, then per-class NMS;
 * "boxes", "scores", "classes", "count" (`--nms` exports) -> the first `count` rows; "raw" output
 * -> SSD decode with the anchors and box variance, then NMS. Segmentation: "logits" (or "raw")
 * [1, H, W, C] -> argmax mask. Classification: "probabilities" -> the top_k classes; multilabel:
 * "probabilities" -> the labels at or above the task's threshold (see {@link ImageLabel}). Any
 * other task whose one output is a map [1, h, w, C] (depth, normals, saliency, boundaries, a type
 * this app does not know) -> an ARGB image of it (see {@link DenseMap}). Other tasks are skipped.
 */
public final class FrameDecoder {
    /** Everything decoded from one frame. */
    public static final class Result {
        public final Map<String, List<Detection>> detections = new LinkedHashMap<>();
        public final Map<String, SegmentationMask> masks = new LinkedHashMap<>();
        /** Classification and multilabel tasks: their labels, in the order each type gives them. */
        public final Map<String, List<ImageLabel>> labels = new LinkedHashMap<>();
        /** Dense tasks: their map rendered at the output's resolution. */
        public final Map<String, DenseMap> maps = new LinkedHashMap<>();
    }

    private final ModelMetadata meta;

    public FrameDecoder(ModelMetadata meta) {
        this.meta = meta;
    }

    /** `outputs`: output name -> tensor bytes (LiteRT's output buffers, native order). */
    public Result decode(Map<String, ByteBuffer> outputs) {
        Map<String, float[]> floats = new LinkedHashMap<>();
        for (Map.Entry<String, ByteBuffer> e : outputs.entrySet()) {
            ModelMetadata.Output spec = meta.outputs.get(e.getKey());
            if (spec == null) {
                throw new IllegalArgumentException("output '" + e.getKey() + "' is not in metadata.json");
            }
            floats.put(e.getKey(), Tensors.toFloat(e.getValue(), spec));
        }
        return decodeFloats(floats);
    }

    /** `outputs`: output name -> dequantized values (see {@link Tensors#toFloat}). */
    public Result decodeFloats(Map<String, float[]> outputs) {
        Result result = new Result();
        for (ModelMetadata.Task task : meta.tasks.values()) {
            Map<String, ModelMetadata.Output> kinds = meta.outputsOf(task.name);
            if (task.isSegmentation()) {
                ModelMetadata.Output logits = kinds.containsKey("logits") ? kinds.get("logits") : kinds.get("raw");
                if (logits != null) {
                    result.masks.put(task.name, mask(need(outputs, logits), logits));
                }
            } else if (task.isClassification() || task.isMultilabel()) {
                ModelMetadata.Output probabilities = kinds.get("probabilities");
                if (probabilities != null) {
                    float[] p = need(outputs, probabilities);
                    result.labels.put(task.name, task.isClassification() ? ImageLabel.topK(p, task.classes, task.topK)
                            : ImageLabel.atLeast(p, task.classes, task.threshold));
                }
            } else if (!task.isDetection()) {
                ModelMetadata.Output map = kinds.size() == 1 ? kinds.values().iterator().next() : null;
                if (map != null && map.shape.length == 4) {
                    int[] s = map.shape; // [1, h, w, C]
                    result.maps.put(task.name, DenseMap.render(task.type, need(outputs, map), s[1], s[2], s[3]));
                }
            } else if (kinds.containsKey("count")) {
                result.detections.put(task.name, nmsedInGraph(outputs, kinds));
            } else if ((kinds.containsKey("boxes") || kinds.containsKey("box_encodings")) && kinds.containsKey("scores")) {
                float[] boxes = kinds.containsKey("boxes") ? need(outputs, kinds.get("boxes"))
                        : SsdDecoder.decodeBoxes(need(outputs, kinds.get("box_encodings")), 0, 4, task.anchors,
                                task.boxVariance);
                float[] scores = need(outputs, kinds.get("scores"));
                result.detections.put(task.name, Nms.perClass(boxes, scores, task.classes.size(), task.nmsIou,
                        task.scoreThreshold, task.maxDetections));
            } else if (kinds.containsKey("raw")) {
                float[][] decoded = SsdDecoder.decode(need(outputs, kinds.get("raw")), task);
                result.detections.put(task.name, Nms.perClass(decoded[0], decoded[1], task.classes.size(),
                        task.nmsIou, task.scoreThreshold, task.maxDetections));
            }
        }
        return result;
    }

    private static SegmentationMask mask(float[] logits, ModelMetadata.Output spec) {
        int[] s = spec.shape; // [1, H, W, C]
        return SegmentationMask.argmax(logits, s[1], s[2], s[3]);
    }

    private static List<Detection> nmsedInGraph(Map<String, float[]> outputs, Map<String, ModelMetadata.Output> kinds) {
        float[] boxes = need(outputs, kinds.get("boxes"));
        float[] scores = need(outputs, kinds.get("scores"));
        float[] classes = need(outputs, kinds.get("classes"));
        int n = Math.min((int) need(outputs, kinds.get("count"))[0], scores.length);
        List<Detection> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(new Detection(boxes[i * 4], boxes[i * 4 + 1], boxes[i * 4 + 2], boxes[i * 4 + 3], scores[i],
                    (int) classes[i]));
        }
        return Collections.unmodifiableList(out);
    }

    private static float[] need(Map<String, float[]> outputs, ModelMetadata.Output spec) {
        float[] v = outputs.get(spec.name);
        if (v == null) {
            throw new IllegalArgumentException("missing output '" + spec.name + "'");
        }
        if (v.length != spec.size()) {
            throw new IllegalArgumentException(spec.name + ": " + v.length + " values, metadata.json says " + spec.size());
        }
        return v;
    }
}
