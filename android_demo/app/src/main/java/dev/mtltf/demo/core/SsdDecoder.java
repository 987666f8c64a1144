package dev.mtltf.demo.core;

/**
 * The SSD box coder of mtl_tf/tasks/detection/boxes.py, for a detector output that is not
 * decoded in the graph (an artifact output of kind "raw": [A, 4 + C + 1], box deltas then class
 * logits with background first). Exported artifacts normally decode in the graph
 * (detection_boxes / detection_scores); this is the same arithmetic from metadata.json's
 * anchors_cy_cx_h_w and box_variance.
 */
public final class SsdDecoder {
    /** Largest decoded size change (log), as in boxes.py: log(1000 / 16). */
    public static final float MAX_LOG_SCALE = (float) Math.log(1000.0 / 16);

    private SsdDecoder() {
    }

    /** Deltas [A, 4] (stride `stride`, from `offset`) -> normalized yxyx boxes [A * 4], clipped to [0, 1]. */
    public static float[] decodeBoxes(float[] raw, int offset, int stride, float[] anchors, float[] variance) {
        int count = anchors.length / 4;
        float[] boxes = new float[count * 4];
        for (int a = 0; a < count; a++) {
            int r = offset + a * stride;
            float acy = anchors[a * 4], acx = anchors[a * 4 + 1], ah = anchors[a * 4 + 2], aw = anchors[a * 4 + 3];
            float cy = raw[r] * variance[0] * ah + acy;
            float cx = raw[r + 1] * variance[1] * aw + acx;
            float h = (float) Math.exp(Math.min(raw[r + 2] * variance[2], MAX_LOG_SCALE)) * ah;
            float w = (float) Math.exp(Math.min(raw[r + 3] * variance[3], MAX_LOG_SCALE)) * aw;
            boxes[a * 4] = clip(cy - h / 2);
            boxes[a * 4 + 1] = clip(cx - w / 2);
            boxes[a * 4 + 2] = clip(cy + h / 2);
            boxes[a * 4 + 3] = clip(cx + w / 2);
        }
        return boxes;
    }

    /** Softmax over `classes + 1` logits per anchor (from `offset`, stride `stride`), background
     * (index 0) dropped: class scores [A * classes]. */
    public static float[] classScores(float[] raw, int offset, int stride, int count, int classes) {
        float[] scores = new float[count * classes];
        double[] e = new double[classes + 1];
        for (int a = 0; a < count; a++) {
            int r = offset + a * stride;
            float max = raw[r];
            for (int c = 1; c <= classes; c++) {
                max = Math.max(max, raw[r + c]);
            }
            double sum = 0;
            for (int c = 0; c <= classes; c++) {
                e[c] = Math.exp(raw[r + c] - max);
                sum += e[c];
            }
            for (int c = 1; c <= classes; c++) {
                scores[a * classes + c - 1] = (float) (e[c] / sum);
            }
        }
        return scores;
    }

    /** A raw head output [A, 4 + C + 1] -> {boxes [A * 4], scores [A * C]}. */
    public static float[][] decode(float[] raw, ModelMetadata.Task task) {
        int classes = task.classes.size();
        int stride = 4 + classes + 1;
        int count = task.anchors.length / 4;
        if (raw.length != count * stride) {
            throw new IllegalArgumentException(task.name + ": raw output of " + raw.length + " values for "
                    + count + " anchors x " + stride);
        }
        return new float[][] {
            decodeBoxes(raw, 0, stride, task.anchors, task.boxVariance),
            classScores(raw, 4, stride, count, classes),
        };
    }

    private static float clip(float v) {
        return Math.max(0f, Math.min(1f, v));
    }
}
