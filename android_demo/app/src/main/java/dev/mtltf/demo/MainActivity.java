package dev.mtltf.demo;

import android.Manifest;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.graphics.Matrix;
import android.os.Bundle;
import android.os.SystemClock;
import android.util.Log;
import android.widget.Toast;

import androidx.activity.ComponentActivity;
import androidx.activity.result.ActivityResultLauncher;
import androidx.activity.result.contract.ActivityResultContracts;
import androidx.camera.core.CameraSelector;
import androidx.camera.core.ImageAnalysis;
import androidx.camera.core.ImageProxy;
import androidx.camera.core.Preview;
import androidx.camera.core.resolutionselector.AspectRatioStrategy;
import androidx.camera.core.resolutionselector.ResolutionSelector;
import androidx.camera.lifecycle.ProcessCameraProvider;
import androidx.camera.view.PreviewView;
import androidx.core.content.ContextCompat;

import com.google.common.util.concurrent.ListenableFuture;

import java.io.IOException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import dev.mtltf.demo.core.FrameDecoder;

/**
 * Camera preview with the multitask model's results drawn over it (a dense map, segmentation
 * masks, boxes, image labels; see OverlayView) and FPS.
 * CameraX Preview + ImageAnalysis (RGBA frames, latest only); inference and decoding run on the
 * analysis thread, drawing on the UI thread.
 */
public final class MainActivity extends ComponentActivity {
    private static final String TAG = "mtl-tf";
    /** CPU threads of LiteRT's CPU accelerator (XNNPACK). */
    private static final int THREADS = 4;
    /** LiteRT's GPU accelerator, off by default: float32/float16 exports only; int8 models run on the CPU. */
    private static final boolean USE_GPU = false;

    private final ExecutorService analysisThread = Executors.newSingleThreadExecutor();
    private PreviewView previewView;
    private OverlayView overlay;
    private volatile ModelRunner model;
    private float fps;
    private long lastFrame;

    private final ActivityResultLauncher<String> cameraPermission = registerForActivityResult(
            new ActivityResultContracts.RequestPermission(), granted -> {
                if (granted) {
                    startCamera();
                } else {
                    Toast.makeText(this, "The demo needs the camera", Toast.LENGTH_LONG).show();
                }
            });

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        previewView = findViewById(R.id.preview);
        previewView.setScaleType(PreviewView.ScaleType.FIT_CENTER); // the overlay assumes fit-centre
        overlay = findViewById(R.id.overlay);
        try {
            model = new ModelRunner(getAssets(), THREADS, USE_GPU);
        } catch (IOException | RuntimeException err) {
            Log.e(TAG, "cannot load the model", err);
            Toast.makeText(this, "Cannot load " + ModelRunner.MODEL + " / " + ModelRunner.METADATA
                    + " from assets: " + err.getMessage(), Toast.LENGTH_LONG).show();
            return;
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera();
        } else {
            cameraPermission.launch(Manifest.permission.CAMERA);
        }
    }

    private void startCamera() {
        ListenableFuture<ProcessCameraProvider> future = ProcessCameraProvider.getInstance(this);
        future.addListener(() -> {
            ProcessCameraProvider provider;
            try {
                provider = future.get();
            } catch (Exception err) {
                Log.e(TAG, "no camera provider", err);
                return;
            }
            // Preview and analysis with the same aspect ratio, so the overlay lines up.
            ResolutionSelector ratio = new ResolutionSelector.Builder()
                    .setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY)
                    .build();
            Preview preview = new Preview.Builder().setResolutionSelector(ratio).build();
            preview.setSurfaceProvider(previewView.getSurfaceProvider());
            ImageAnalysis analysis = new ImageAnalysis.Builder()
                    .setResolutionSelector(ratio)
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .build();
            analysis.setAnalyzer(analysisThread, this::analyze);
            provider.unbindAll();
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis);
        }, ContextCompat.getMainExecutor(this));
    }

    /** One camera frame: upright RGB at the model's input size -> inference -> overlay. */
    private void analyze(ImageProxy image) {
        try {
            ModelRunner runner = model;
            if (runner == null) { // closed
                return;
            }
            int rotation = image.getImageInfo().getRotationDegrees();
            Bitmap frame = image.toBitmap();
            if (rotation != 0) {
                Matrix m = new Matrix();
                m.postRotate(rotation);
                frame = Bitmap.createBitmap(frame, 0, 0, frame.getWidth(), frame.getHeight(), m, true);
            }
            int width = runner.metadata.inputWidth(), height = runner.metadata.inputHeight();
            // Stretched to the model's input size like export/jetson/run.py; boxes and masks are
            // normalized, so they map back onto the whole frame.
            Bitmap input = Bitmap.createScaledBitmap(frame, width, height, true);
            int[] argb = new int[width * height];
            input.getPixels(argb, 0, width, 0, 0, width, height);
            FrameDecoder.Result result = runner.run(argb);

            long now = SystemClock.elapsedRealtime();
            if (lastFrame > 0) {
                float instant = 1000f / Math.max(1, now - lastFrame);
                fps = fps == 0 ? instant : 0.9f * fps + 0.1f * instant;
            }
            lastFrame = now;
            int frameWidth = frame.getWidth(), frameHeight = frame.getHeight();
            float shownFps = fps;
            runOnUiThread(() -> overlay.show(runner.metadata, result, frameWidth, frameHeight, shownFps));
        } finally {
            image.close();
        }
    }

    @Override
    protected void onDestroy() {
        super.onDestroy();
        // On the analysis thread, after any frame still being analysed; later frames see null.
        analysisThread.execute(() -> {
            if (model != null) {
                model.close();
                model = null;
            }
        });
        analysisThread.shutdown();
    }
}
