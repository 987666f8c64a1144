package dev.mtltf.demo.core;

/**
 * A dense task's output map (depth, normals, saliency, boundaries, or a type this app does not
 * know) as an ARGB image at the output's own resolution (1/output_stride of the input), row-major
 * in Android's Bitmap.setPixels order. Rendered as export/jetson/run.py's `dense_rgb` does, value
 * for value: normals as RGB = (n / |n| + 1) / 2; saliency and boundaries (probabilities) over 0..1
 * in a jet colour map; depth and any other type its first channel over the map's own min..max in
 * the same map. Opaque; non-finite values are transparent.
 */
public final class DenseMap {
    public final int height;
    public final int width;
    public final int[] argb;

    public DenseMap(int height, int width, int[] argb) {
        this.height = height;
        this.width = width;
        this.argb = argb;
    }

    /** Render `values` [height, width, channels] (dequantized) of a task of type `type`. */
    public static DenseMap render(String type, float[] values, int height, int width, int channels) {
        if (values.length != height * width * channels) {
            throw new IllegalArgumentException(values.length + " values for a " + height + "x" + width + "x"
                    + channels + " map");
        }
        int[] argb = "normals".equals(type) && channels >= 3 ? normals(values, height * width, channels)
                : heat(values, height * width, channels, "saliency".equals(type) || "boundaries".equals(type));
        return new DenseMap(height, width, argb);
    }

    /** Unit normals as RGB: (n / |n| + 1) * 127.5 in double precision; zero vectors mid-grey. */
    private static int[] normals(float[] values, int pixels, int channels) {
        int[] out = new int[pixels];
        for (int p = 0; p < pixels; p++) {
            double x = values[p * channels], y = values[p * channels + 1], z = values[p * channels + 2];
            double length = Math.sqrt(x * x + y * y + z * z);
            if (!Double.isFinite(length)) {
                continue; // transparent
            }
            out[p] = 0xFF000000 | unitToByte(x, length) << 16 | unitToByte(y, length) << 8 | unitToByte(z, length);
        }
        return out;
    }

    private static int unitToByte(double component, double length) {
        double unit = length > 0 ? component / length : 0;
        return (int) Math.max(0, Math.min(255, Math.floor((unit + 1) * 127.5 + 0.5)));
    }

    /** The first channel in the jet map, over 0..1 (`probability`) or its finite min..max. */
    private static int[] heat(float[] values, int pixels, int channels, boolean probability) {
        float low = 0f, high = 1f;
        if (!probability) {
            low = Float.POSITIVE_INFINITY;
            high = Float.NEGATIVE_INFINITY;
            for (int p = 0; p < pixels; p++) {
                float v = values[p * channels];
                if (Float.isFinite(v)) {
                    low = Math.min(low, v);
                    high = Math.max(high, v);
                }
            }
            if (low > high) { // nothing finite
                low = 0f;
                high = 1f;
            }
        }
        float span = Math.max(high - low, 1e-6f);
        int[] out = new int[pixels];
        for (int p = 0; p < pixels; p++) {
            float v = values[p * channels];
            if (Float.isFinite(v)) {
                out[p] = jet((v - low) / span);
            }
        }
        return out;
    }

    /**
     * Opaque ARGB of t in the jet colour map (dark blue, cyan, yellow, dark red), t clipped to
     * [0, 1]: channel k of red, green, blue = clip(1.5 - |4t - k|, 0, 1) for k = 3, 2, 1, times
     * 255, rounded half up. Float arithmetic, term for term as run.py's NumPy float32.
     */
    public static int jet(float t) {
        t = Math.max(0f, Math.min(1f, t));
        return 0xFF000000 | jetChannel(t, 3f) << 16 | jetChannel(t, 2f) << 8 | jetChannel(t, 1f);
    }

    private static int jetChannel(float t, float k) {
        float level = Math.max(0f, Math.min(1f, 1.5f - Math.abs(4f * t - k)));
        return (int) Math.floor(level * 255f + 0.5f);
    }
}
