package dev.mtltf.demo.core;

/** A class map (argmax of the segmentation logits), row-major [height * width]. */
public final class SegmentationMask {
    public final int height;
    public final int width;
    public final byte[] classIds;

    public SegmentationMask(int height, int width, byte[] classIds) {
        this.height = height;
        this.width = width;
        this.classIds = classIds;
    }

    public int classAt(int y, int x) {
        return classIds[y * width + x] & 0xFF;
    }

    /** Argmax over the last axis of logits [H, W, C] (first maximum on ties, like tf.argmax). */
    public static SegmentationMask argmax(float[] logits, int height, int width, int classes) {
        byte[] ids = new byte[height * width];
        for (int p = 0; p < ids.length; p++) {
            int base = p * classes;
            int best = 0;
            float bestValue = logits[base];
            for (int c = 1; c < classes; c++) {
                if (logits[base + c] > bestValue) {
                    bestValue = logits[base + c];
                    best = c;
                }
            }
            ids[p] = (byte) best;
        }
        return new SegmentationMask(height, width, ids);
    }
}
