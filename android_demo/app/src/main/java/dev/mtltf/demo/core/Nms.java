package dev.mtltf.demo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Per-class greedy NMS with the semantics of tf.image.combined_non_max_suppression (what
 * mtl-tf's Python post-processing and the in-graph NMS of `--nms` exports compute): per class,
 * boxes with score > scoreThreshold in descending score order, a box is dropped when its IoU
 * with an already kept box of that class is > iouThreshold, at most maxDetections per class;
 * then all classes merged, the top maxDetections by score. Equal scores are taken in anchor
 * order (TensorFlow leaves their order unspecified).
 */
public final class Nms {
    private Nms() {
    }

    /** boxes [A * 4] normalized yxyx, scores [A * classes] (no background) -> detections by score. */
    public static List<Detection> perClass(float[] boxes, float[] scores, int classes, float iouThreshold,
                                           float scoreThreshold, int maxDetections) {
        int count = boxes.length / 4;
        List<Detection> all = new ArrayList<>();
        Integer[] order = new Integer[count];
        for (int c = 0; c < classes; c++) {
            int n = 0;
            for (int a = 0; a < count; a++) {
                if (scores[a * classes + c] > scoreThreshold) {
                    order[n++] = a;
                }
            }
            final int cls = c;
            Arrays.sort(order, 0, n, Comparator.comparingDouble((Integer a) -> -scores[a * classes + cls]));
            int[] kept = new int[Math.min(n, maxDetections)];
            int k = 0;
            for (int i = 0; i < n && k < maxDetections; i++) {
                int a = order[i];
                boolean keep = true;
                for (int j = k - 1; j >= 0 && keep; j--) {
                    keep = iou(boxes, a, kept[j]) <= iouThreshold;
                }
                if (keep) {
                    kept[k++] = a;
                    all.add(new Detection(boxes[a * 4], boxes[a * 4 + 1], boxes[a * 4 + 2], boxes[a * 4 + 3],
                            scores[a * classes + c], c));
                }
            }
        }
        // Stable: equal scores stay in class order, then anchor order.
        all.sort(Comparator.comparingDouble((Detection d) -> -d.score));
        List<Detection> out = new ArrayList<>();
        for (Detection d : all) {
            if (out.size() == maxDetections || d.score <= 0f) {
                break;
            }
            out.add(d);
        }
        return out;
    }

    /** IoU of boxes i and j, in float arithmetic like TensorFlow's kernel; 0 for an empty box. */
    static float iou(float[] boxes, int i, int j) {
        float yminI = Math.min(boxes[i * 4], boxes[i * 4 + 2]), ymaxI = Math.max(boxes[i * 4], boxes[i * 4 + 2]);
        float xminI = Math.min(boxes[i * 4 + 1], boxes[i * 4 + 3]), xmaxI = Math.max(boxes[i * 4 + 1], boxes[i * 4 + 3]);
        float yminJ = Math.min(boxes[j * 4], boxes[j * 4 + 2]), ymaxJ = Math.max(boxes[j * 4], boxes[j * 4 + 2]);
        float xminJ = Math.min(boxes[j * 4 + 1], boxes[j * 4 + 3]), xmaxJ = Math.max(boxes[j * 4 + 1], boxes[j * 4 + 3]);
        float areaI = (ymaxI - yminI) * (xmaxI - xminI);
        float areaJ = (ymaxJ - yminJ) * (xmaxJ - xminJ);
        if (areaI <= 0f || areaJ <= 0f) {
            return 0f;
        }
        float ih = Math.max(Math.min(ymaxI, ymaxJ) - Math.max(yminI, yminJ), 0f);
        float iw = Math.max(Math.min(xmaxI, xmaxJ) - Math.max(xminI, xminJ), 0f);
        float inter = ih * iw;
        return inter / (areaI + areaJ - inter);
    }
}
