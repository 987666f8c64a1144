package dev.mtltf.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parts of an mtl-tf export's metadata.json an app needs: input tensor, the output table
 * (task, kind, shape, dtype, int8 quantization per output) and each task's classes and
 * post-processing parameters (anchors, box variance, NMS). See mtl_tf/export/metadata.py.
 */
public final class ModelMetadata {
    /** Highest metadata.json format_version this reader knows. */
    public static final int FORMAT_VERSION = 3;

    /** One output of the serving signature. A quantized one reads real = scale * (q - zeroPoint). */
    public static final class Output {
        public final String name;
        public final String task;
        public final String kind;
        public final int[] shape;
        public final String dtype;
        public final float scale;
        public final int zeroPoint;

        Output(String name, String task, String kind, int[] shape, String dtype, float scale, int zeroPoint) {
            this.name = name;
            this.task = task;
            this.kind = kind;
            this.shape = shape;
            this.dtype = dtype;
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }

        /** Number of elements. */
        public int size() {
            int n = 1;
            for (int d : shape) {
                n *= d;
            }
            return n;
        }
    }

    /** A task's classes and its post-processing parameters (detection, classification, multilabel). */
    public static final class Task {
        public final String name;
        /** The task type ("detection", "segmentation", ...); metadata.json before format 3 named tasks after it. */
        public final String type;
        public final List<String> classes;
        /** Anchors (cy, cx, h, w) flattened, [A * 4]; null for tasks without anchors. */
        public final float[] anchors;
        public final float[] boxVariance;
        public final float nmsIou;
        public final float scoreThreshold;
        public final int maxDetections;
        /** Classification: the classes kept per image (the task config's top_k). */
        public final int topK;
        /** Multilabel: the probability from which a label is present. */
        public final float threshold;

        Task(String name, String type, List<String> classes, float[] anchors, float[] boxVariance, float nmsIou,
             float scoreThreshold, int maxDetections, int topK, float threshold) {
            this.name = name;
            this.type = type;
            this.classes = classes;
            this.anchors = anchors;
            this.boxVariance = boxVariance;
            this.nmsIou = nmsIou;
            this.scoreThreshold = scoreThreshold;
            this.maxDetections = maxDetections;
            this.topK = topK;
            this.threshold = threshold;
        }

        public boolean isDetection() {
            return "detection".equals(type);
        }

        public boolean isSegmentation() {
            return "segmentation".equals(type);
        }

        public boolean isClassification() {
            return "classification".equals(type);
        }

        public boolean isMultilabel() {
            return "multilabel".equals(type);
        }
    }

    public final String artifact;
    public final String quantization;
    public final boolean nmsInGraph;
    public final String inputName;
    /** [1, H, W, 3], NHWC, RGB, raw 0..255 pixels (the model normalizes inside). */
    public final int[] inputShape;
    public final String inputDtype;
    /** Input quantization when the metadata gives one (int8 inputs); else scale 1, zero point 0. */
    public final float inputScale;
    public final int inputZeroPoint;
    public final Map<String, Output> outputs;
    public final Map<String, Task> tasks;

    private ModelMetadata(Map<String, Object> root) {
        int version = (int) number(root, "format_version", 0);
        if (version > FORMAT_VERSION) {
            throw new IllegalArgumentException("metadata.json format_version " + version
                    + " is newer than this app (" + FORMAT_VERSION + ")");
        }
        artifact = (String) root.get("artifact");
        quantization = (String) root.get("quantization");
        nmsInGraph = Boolean.TRUE.equals(root.get("nms_in_graph"));
        Map<String, Object> input = object(root, "input");
        inputName = (String) input.get("name");
        inputShape = ints(list(input, "shape"));
        inputDtype = (String) input.get("dtype");
        Map<String, Object> inputQuant = input.containsKey("quantization") ? object(input, "quantization") : null;
        inputScale = inputQuant == null ? 1f : (float) number(inputQuant, "scale", 1);
        inputZeroPoint = inputQuant == null ? 0 : (int) number(inputQuant, "zero_point", 0);
        if (!"NHWC".equals(input.get("layout")) || inputShape.length != 4 || inputShape[3] != 3) {
            throw new IllegalArgumentException("metadata.json: expected an NHWC RGB image input, got "
                    + input.get("layout") + " " + java.util.Arrays.toString(inputShape));
        }

        Map<String, Output> outs = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : object(root, "outputs").entrySet()) {
            @SuppressWarnings("unchecked")
            Map<String, Object> spec = (Map<String, Object>) e.getValue();
            Map<String, Object> q = spec.containsKey("quantization") ? object(spec, "quantization") : null;
            outs.put(e.getKey(), new Output(e.getKey(), (String) spec.get("task"), (String) spec.get("kind"),
                    ints(list(spec, "shape")), (String) spec.get("dtype"),
                    q == null ? 0f : (float) number(q, "scale", 0), q == null ? 0 : (int) number(q, "zero_point", 0)));
        }
        outputs = Collections.unmodifiableMap(outs);

        Map<String, Task> ts = new LinkedHashMap<>();
        for (Map.Entry<String, Object> e : object(root, "tasks").entrySet()) {
            @SuppressWarnings("unchecked")
            Map<String, Object> spec = (Map<String, Object>) e.getValue();
            List<String> classes = new ArrayList<>();
            for (Object c : list(spec, "classes")) {
                classes.add((String) c);
            }
            float[] anchors = null;
            if (spec.containsKey("anchors_cy_cx_h_w")) {
                List<Object> rows = list(spec, "anchors_cy_cx_h_w");
                anchors = new float[rows.size() * 4];
                for (int i = 0; i < rows.size(); i++) {
                    float[] row = floats((List<?>) rows.get(i));
                    System.arraycopy(row, 0, anchors, i * 4, 4);
                }
            }
            float[] variance = spec.containsKey("box_variance") ? floats(list(spec, "box_variance")) : null;
            String type = spec.containsKey("type") ? (String) spec.get("type") : e.getKey();
            // Defaults as mtl-tf's task configs (top_k 5, threshold 0.5) and export/jetson/run.py.
            Map<String, Object> config = spec.get("config") instanceof Map ? object(spec, "config") : Collections.emptyMap();
            ts.put(e.getKey(), new Task(e.getKey(), type, Collections.unmodifiableList(classes), anchors, variance,
                    (float) number(spec, "nms_iou", 0.45), (float) number(spec, "score_threshold", 0.01),
                    (int) number(spec, "max_detections", 100), (int) number(config, "top_k", 5),
                    (float) number(spec, "threshold", 0.5)));
        }
        tasks = Collections.unmodifiableMap(ts);
    }

    /** Parse the text of a metadata.json. */
    @SuppressWarnings("unchecked")
    public static ModelMetadata parse(String json) {
        return new ModelMetadata((Map<String, Object>) Json.parse(json));
    }

    public int inputHeight() {
        return inputShape[1];
    }

    public int inputWidth() {
        return inputShape[2];
    }

    /** {kind: output} of one task. */
    public Map<String, Output> outputsOf(String task) {
        Map<String, Output> out = new LinkedHashMap<>();
        for (Output o : outputs.values()) {
            if (task.equals(o.task)) {
                out.put(o.kind, o);
            }
        }
        return out;
    }

    // -- typed access to the parsed JSON ----------------------------------------------
    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Map<String, Object> parent, String key) {
        Object v = parent.get(key);
        if (!(v instanceof Map)) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' missing or not an object");
        }
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    private static List<Object> list(Map<String, Object> parent, String key) {
        Object v = parent.get(key);
        if (!(v instanceof List)) {
            throw new IllegalArgumentException("metadata.json: '" + key + "' missing or not a list");
        }
        return (List<Object>) v;
    }

    private static double number(Map<String, Object> parent, String key, double fallback) {
        Object v = parent.get(key);
        return v instanceof Number ? ((Number) v).doubleValue() : fallback;
    }

    private static int[] ints(List<?> values) {
        int[] out = new int[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) values.get(i)).intValue();
        }
        return out;
    }

    private static float[] floats(List<?> values) {
        float[] out = new float[values.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) values.get(i)).floatValue();
        }
        return out;
    }
}
