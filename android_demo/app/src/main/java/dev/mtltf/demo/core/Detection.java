package dev.mtltf.demo.core;

/** One detected box: normalized (ymin, xmin, ymax, xmax), score and class index (no background). */
public final class Detection {
    public final float ymin;
    public final float xmin;
    public final float ymax;
    public final float xmax;
    public final float score;
    public final int classId;

    public Detection(float ymin, float xmin, float ymax, float xmax, float score, int classId) {
        this.ymin = ymin;
        this.xmin = xmin;
        this.ymax = ymax;
        this.xmax = xmax;
        this.score = score;
        this.classId = classId;
    }

    @Override
    public String toString() {
        return classId + " " + score + " " + ymin + " " + xmin + " " + ymax + " " + xmax;
    }
}
