package dev.mtltf.demo;

import android.content.Context;
import android.graphics.Bitmap;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Paint;
import android.graphics.RectF;
import android.util.AttributeSet;
import android.view.View;

import java.util.List;
import java.util.Locale;
import java.util.Map;

import dev.mtltf.demo.core.DenseMap;
import dev.mtltf.demo.core.Detection;
import dev.mtltf.demo.core.FrameDecoder;
import dev.mtltf.demo.core.ImageLabel;
import dev.mtltf.demo.core.ModelMetadata;
import dev.mtltf.demo.core.SegmentationMask;

/**
 * Draws one frame's results over the camera preview, in export/jetson/run.py's order: one dense
 * task's map (depth, normals, saliency, boundaries, ...) blended over the whole frame, each
 * segmentation class as a semi-transparent colour, boxes with class name and score, the FPS and
 * under it one text line per image-label task (classification, multilabel). The frame is shown
 * fit-centred (PreviewView.ScaleType.FIT_CENTER), so normalized coordinates map onto that rect.
 */
public final class OverlayView extends View {
    /** Boxes drawn at or above this score (metadata.json's score_threshold is far lower). */
    static final float MIN_SCORE = 0.3f;
    /** The dense task whose map is drawn (its name in metadata.json); null: the first dense task. */
    static final String DENSE_TASK = null;
    private static final int MASK_ALPHA = 0x73; // ~45 %, as export/jetson/run.py blends
    private static final int MAP_ALPHA = 0x66; // 40 %, as export/jetson/run.py blends dense maps

    private final Paint boxPaint = new Paint();
    private final Paint textPaint = new Paint();
    private final Paint maskPaint = new Paint();
    private final Paint mapPaint = new Paint();
    private final Paint labelPaint = new Paint();
    private final RectF frameRect = new RectF();
    private ModelMetadata metadata;
    private FrameDecoder.Result result;
    private int frameWidth = 1;
    private int frameHeight = 1;
    private float fps;
    private Bitmap maskBitmap;
    private Bitmap mapBitmap;

    public OverlayView(Context context, AttributeSet attrs) {
        super(context, attrs);
        boxPaint.setStyle(Paint.Style.STROKE);
        boxPaint.setStrokeWidth(4f);
        textPaint.setTextSize(36f);
        textPaint.setAntiAlias(true);
        maskPaint.setFilterBitmap(false); // nearest neighbour: class borders stay sharp
        mapPaint.setFilterBitmap(true); // bilinear, as the runner scales a map to the frame
        mapPaint.setAlpha(MAP_ALPHA);
        labelPaint.setTextSize(32f);
        labelPaint.setAntiAlias(true);
        labelPaint.setColor(Color.WHITE);
        labelPaint.setShadowLayer(4f, 0f, 0f, Color.BLACK); // readable over any frame
    }

    /** Called on the UI thread with the results of a frame of `frameWidth` x `frameHeight` (upright). */
    void show(ModelMetadata metadata, FrameDecoder.Result result, int frameWidth, int frameHeight, float fps) {
        this.metadata = metadata;
        this.result = result;
        this.frameWidth = frameWidth;
        this.frameHeight = frameHeight;
        this.fps = fps;
        invalidate();
    }

    /** A distinct, stable colour per class index. */
    static int classColour(int index) {
        float hue = (index * 137.508f) % 360f; // golden angle
        return Color.HSVToColor(new float[] {hue, 0.75f, 1f});
    }

    @Override
    protected void onDraw(Canvas canvas) {
        super.onDraw(canvas);
        if (result == null) {
            return;
        }
        float scale = Math.min(getWidth() / (float) frameWidth, getHeight() / (float) frameHeight);
        float w = frameWidth * scale, h = frameHeight * scale;
        frameRect.set((getWidth() - w) / 2, (getHeight() - h) / 2, (getWidth() + w) / 2, (getHeight() + h) / 2);

        DenseMap map = DENSE_TASK != null ? result.maps.get(DENSE_TASK)
                : result.maps.isEmpty() ? null : result.maps.values().iterator().next();
        if (map != null) {
            canvas.drawBitmap(mapBitmap(map), null, frameRect, mapPaint);
        }
        for (SegmentationMask mask : result.masks.values()) {
            canvas.drawBitmap(maskBitmap(mask), null, frameRect, maskPaint);
        }
        for (Map.Entry<String, List<Detection>> e : result.detections.entrySet()) {
            List<String> names = metadata.tasks.get(e.getKey()).classes;
            for (Detection d : e.getValue()) {
                if (d.score < MIN_SCORE) {
                    continue;
                }
                int colour = classColour(d.classId);
                boxPaint.setColor(colour);
                textPaint.setColor(colour);
                float left = frameRect.left + d.xmin * w, top = frameRect.top + d.ymin * h;
                canvas.drawRect(left, top, frameRect.left + d.xmax * w, frameRect.top + d.ymax * h, boxPaint);
                String label = String.format(Locale.US, "%s %.2f", names.get(d.classId), d.score);
                canvas.drawText(label, left, Math.max(top - 6, textPaint.getTextSize()), textPaint);
            }
        }
        textPaint.setColor(Color.WHITE);
        canvas.drawText(String.format(Locale.US, "%.1f FPS", fps), 24, 24 + textPaint.getTextSize(), textPaint);
        float y = 24 + textPaint.getTextSize();
        for (Map.Entry<String, List<ImageLabel>> e : result.labels.entrySet()) {
            y += labelPaint.getTextSize() * 1.3f;
            canvas.drawText(labelLine(e.getKey(), e.getValue()), 24, y, labelPaint);
        }
    }

    /** "task: name 0.87, name 0.05" (classification: best first; multilabel: the labels present, or "-"). */
    static String labelLine(String task, List<ImageLabel> labels) {
        StringBuilder line = new StringBuilder(task).append(':');
        for (int i = 0; i < labels.size(); i++) {
            ImageLabel label = labels.get(i);
            line.append(i == 0 ? " " : ", ").append(String.format(Locale.US, "%s %.2f", label.name, label.probability));
        }
        return labels.isEmpty() ? line.append(" -").toString() : line.toString();
    }

    private Bitmap mapBitmap(DenseMap map) {
        if (mapBitmap == null || mapBitmap.getWidth() != map.width || mapBitmap.getHeight() != map.height) {
            mapBitmap = Bitmap.createBitmap(map.width, map.height, Bitmap.Config.ARGB_8888);
        }
        mapBitmap.setPixels(map.argb, 0, map.width, 0, 0, map.width, map.height);
        return mapBitmap;
    }

    private Bitmap maskBitmap(SegmentationMask mask) {
        if (maskBitmap == null || maskBitmap.getWidth() != mask.width || maskBitmap.getHeight() != mask.height) {
            maskBitmap = Bitmap.createBitmap(mask.width, mask.height, Bitmap.Config.ARGB_8888);
        }
        int[] pixels = new int[mask.width * mask.height];
        for (int i = 0; i < pixels.length; i++) {
            pixels[i] = (classColour(mask.classIds[i] & 0xFF) & 0x00FFFFFF) | (MASK_ALPHA << 24);
        }
        maskBitmap.setPixels(pixels, 0, mask.width, 0, 0, mask.width, mask.height);
        return maskBitmap;
    }
}
