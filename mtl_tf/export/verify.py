"""`--verify`: an artifact's metrics through the evaluator against the float Keras model's."""

from __future__ import annotations

from pathlib import Path

from mtl_tf.export.tflite import ExportError

DEFAULT_MAX_DROP = 0.02


class VerificationError(ExportError):
    """`--verify` rejected an artifact: a task's primary metric dropped too far."""


class Verifier:
    """Evaluates artifacts on the recipe's validation split and rejects (raises
    `VerificationError`) any whose primary metric drops more than `export.max_drop[task]`
    below the Keras model's. `reports` keeps {artifact folder: {task: deltas}} of every check."""

    def __init__(self, model, recipe, batch_size: int = 16):
        from mtl_tf.evaluate.job import run_evaluate
        from mtl_tf.inference import keras_predictor

        self.recipe = recipe
        self.batch_size = batch_size
        self.reference = run_evaluate(keras_predictor(model, recipe=recipe), "val", None, batch_size, 0, True)
        self.reports: dict = {}

    def __call__(self, artifact: Path) -> None:
        if artifact.suffix != ".tflite":
            return  # only LiteRT artifacts are verified (ONNX/TensorRT run on the target)
        from mtl_tf.evaluate.job import run_evaluate
        from mtl_tf.inference import load_predictor

        predictor = load_predictor(artifact)
        predictor.recipe = self.recipe
        results = run_evaluate(predictor, "val", None, self.batch_size, 0, True)
        report, failures = {}, []
        for name, task in predictor.tasks.items():
            report[name] = metric_deltas(self.reference[name], results[name])
            key = task.primary_metric
            drop = self.reference[name][key] - results[name][key]
            drop = drop if task.higher_is_better(key) else -drop  # a worse value is a positive drop
            limit = self.recipe.export.max_drop.get(name, DEFAULT_MAX_DROP)
            report[name]["primary"] = {"metric": key, "drop": drop, "max_drop": limit, "ok": drop <= limit}
            if drop > limit:
                failures.append(f"{name} {key} dropped {drop:.4f} (max_drop {limit})")
        variant = artifact.parent.name.lstrip(".").removesuffix(".partial")
        self.reports[variant] = report
        if failures:
            raise VerificationError(
                f"{variant}: rejected by --verify: "
                + "; ".join(failures) + "\n" + format_report(report)
            )


def metric_deltas(reference: dict, results: dict) -> dict:
    """{metric: {"keras", "artifact", "delta"}} of the scalar metrics of one task."""
    return {
        key: {"keras": float(value), "artifact": float(results[key]), "delta": float(results[key]) - float(value)}
        for key, value in reference.items()
        if isinstance(value, (int, float))
    }


def format_report(report: dict) -> str:
    """One line per task: its primary metric, Keras -> artifact, and the other deltas."""
    lines = []
    for task, deltas in report.items():
        primary = deltas["primary"]
        main = deltas[primary["metric"]]
        others = ", ".join(f"{k} {v['delta']:+.4f}" for k, v in deltas.items() if k not in ("primary", primary["metric"]))
        verdict = "ok" if primary["ok"] else f"FAIL (max_drop {primary['max_drop']})"
        lines.append(
            f"  {task}: {primary['metric']} {main['keras']:.4f} -> {main['artifact']:.4f} "
            f"({main['delta']:+.4f}) {verdict}; {others}"
        )
    return "\n".join(lines)
