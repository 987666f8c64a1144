package dev.mtltf.demo.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * One image-level label (classification, multilabel): class index, name and probability, read
 * from a task's `<task>_probabilities` output as mtl-tf's Predictor and export/jetson/run.py do.
 */
public final class ImageLabel {
    public final int classId;
    public final String name;
    public final float probability;

    public ImageLabel(int classId, String name, float probability) {
        this.classId = classId;
        this.name = name;
        this.probability = probability;
    }

    /**
     * Classification: the `k` most probable classes, most probable first; equal probabilities in
     * class order (the lower index first, as tf.math.top_k).
     */
    public static List<ImageLabel> topK(float[] probabilities, List<String> classes, int k) {
        checkLength(probabilities, classes);
        List<Integer> order = new ArrayList<>(probabilities.length);
        for (int c = 0; c < probabilities.length; c++) {
            order.add(c);
        }
        // List.sort is a stable merge sort: ties keep their class order.
        order.sort((a, b) -> Float.compare(probabilities[b], probabilities[a]));
        List<ImageLabel> out = new ArrayList<>();
        for (int c : order.subList(0, Math.min(Math.max(k, 0), order.size()))) {
            out.add(new ImageLabel(c, classes.get(c), probabilities[c]));
        }
        return Collections.unmodifiableList(out);
    }

    /** Multilabel: every label whose probability is at or above `threshold`, in class order. */
    public static List<ImageLabel> atLeast(float[] probabilities, List<String> classes, float threshold) {
        checkLength(probabilities, classes);
        List<ImageLabel> out = new ArrayList<>();
        for (int c = 0; c < probabilities.length; c++) {
            if (probabilities[c] >= threshold) {
                out.add(new ImageLabel(c, classes.get(c), probabilities[c]));
            }
        }
        return Collections.unmodifiableList(out);
    }

    private static void checkLength(float[] probabilities, List<String> classes) {
        if (probabilities.length != classes.size()) {
            throw new IllegalArgumentException(probabilities.length + " probabilities for " + classes.size()
                    + " classes in metadata.json");
        }
    }

    @Override
    public String toString() {
        return classId + " " + probability;
    }
}
