"""`mtl-tf bench`: MAC counting, percentiles, ratios, round-robin order, child-process RSS, and
the command end to end on the tiny recipe. No assertion depends on how fast anything ran."""

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_RECIPE
from mtl_tf.bench import contenders as C
from mtl_tf.bench.flops import count_macs
from mtl_tf.bench.report import add_ratios
from mtl_tf.bench.timing import percentiles, round_robin
from mtl_tf.cli import main
from mtl_tf.recipe import load_recipe
from mtl_tf.model.backbones import build_backbone

RUNTIMES = ["keras", "tflite_fp32", "tflite_int8", "onnx"]
# Three detection levels (no extra stages): fewer ops to convert, the same code paths.
OVERRIDES = ["tasks.detection.feature_levels=3", "tasks.detection.l2_normalized_levels=1"]


# ---------------------------------------------------------------- MACs


def _single_layer_macs(layer, input_shape):
    inputs = keras.Input(input_shape)
    return count_macs(keras.Model(inputs, layer(inputs)))


def test_macs_of_single_layers_equal_the_hand_computed_counts():
    # 3x3 conv, 4 -> 8 channels, stride 2 'same' on 16x16: 8x8 outputs x 8 channels x (3*3*4).
    assert _single_layer_macs(keras.layers.Conv2D(8, 3, 2, padding="same"), (16, 16, 4)) == 8 * 8 * 8 * 3 * 3 * 4
    # 'valid' 5x5 on 12x10: 8x6 outputs.
    assert _single_layer_macs(keras.layers.Conv2D(2, 5), (12, 10, 3)) == 8 * 6 * 2 * 5 * 5 * 3
    # Grouped: each output channel sees in_channels / groups inputs.
    assert _single_layer_macs(keras.layers.Conv2D(8, 1, groups=2), (4, 4, 6)) == 4 * 4 * 8 * 3
    # Depthwise 3x3 with multiplier 2 on 6 channels: 12 output channels, 9 MACs each.
    assert _single_layer_macs(keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (5, 5, 6)) == 5 * 5 * 12 * 9
    # Separable: depthwise 3x3 + pointwise 6 -> 4.
    assert _single_layer_macs(keras.layers.SeparableConv2D(4, 3, padding="same"), (5, 5, 6)) == 5 * 5 * (6 * 9 + 6 * 4)
    assert _single_layer_macs(keras.layers.Dense(7), (3, 5)) == 3 * 5 * 7
    # Layers without multiply-accumulates of weights count zero.
    assert _single_layer_macs(keras.layers.ReLU(), (4, 4, 2)) == 0


def test_a_layer_called_twice_counts_twice_and_nested_models_count():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(3, 1)
    inner = keras.Model(inputs, conv(conv(inputs)))
    assert count_macs(inner) == 2 * 8 * 8 * 3 * 3
    outer_in = keras.Input((8, 8, 3))
    assert count_macs(keras.Model(outer_in, keras.layers.Dense(2)(inner(outer_in)))) == 2 * 8 * 8 * 3 * 3 + 8 * 8 * 3 * 2


@pytest.mark.parametrize("overrides", [
    [], ["model.split_last_stage=true"], ["model.neck={type: fpn, channels: 16}"],
    ["model.neck={type: bifpn, channels: 16, repeats: 2}"],
])
def test_single_task_contenders_are_the_trunk_plus_one_head(overrides):
    """Each single-task model is the shared trunk (backbone, neck) + that head, as `fit` would train
    it alone; the multitask model is the trunk + every head. Heads are counted on the multitask
    model's own branches (taps -> output), independently of the contenders."""
    recipe = load_recipe(TINY_RECIPE, overrides)
    models = C.build_models(recipe)
    macs = {name: count_macs(model) for name, model in models.items()}
    branches = models["multitask"].engine_graph.branches
    heads = {task: count_macs(branches[task]) for task in recipe.tasks}
    assert all(h > 0 for h in heads.values())
    for task in recipe.tasks:
        assert models[task].neck == models["multitask"].neck and list(models[task].tasks) == [task]
        assert macs[task] == macs["trunk"] + heads[task], task
    assert macs["multitask"] == macs["trunk"] + sum(heads.values()) < sum(macs[t] for t in recipe.tasks)
    # The trunk is the backbone (its last stage when shared) and the neck, nothing else.
    backbone = build_backbone("tiny", (64, 64), width=8)
    neck = models["multitask"].engine_graph.neck
    if recipe.model.split_last_stage:
        assert macs["trunk"] == count_macs(backbone.lower)
    else:
        last = count_macs(backbone.last_stage())
        assert macs["trunk"] == count_macs(backbone.lower) + last + (count_macs(neck) if neck else 0)
    assert (neck is not None) == (recipe.model.neck is not None) and (neck is None or count_macs(neck) > 0)


# ---------------------------------------------------------------- statistics and ratios


def test_percentiles_on_known_values():
    stats = percentiles(list(range(11, 0, -1)))  # 1..11, unordered
    assert stats == {"p10": 2.0, "p50": 6.0, "p90": 10.0}
    assert percentiles([1.0, 2.0])["p50"] == 1.5  # interpolated between order statistics


def test_ratios_come_from_the_measured_medians_and_the_macs():
    def row(p50, rss, size):
        return {"p50_ms": p50, "peak_rss_mb": rss, "size_mb": size}

    results = {
        "contenders": {"naive": {"macs": 300}, "multitask": {"macs": 200}},
        "baseline_rss_mb": {"tflite_fp32": 40.0, "tflite_int8": 40.0},
        "runtimes": {
            "tflite_fp32": {"naive": row(90.0, 240.0, 30.0), "multitask": row(50.0, 140.0, 20.0)},
            "tflite_int8": {"naive": row(30.0, 100.0, 8.0), "multitask": row(20.0, 80.0, 5.0)},
        },
    }
    out = add_ratios(results)
    fp32 = out["ratios"]["tflite_fp32"]
    assert fp32["latency"] == pytest.approx(1.8)
    assert fp32["memory"] == pytest.approx(240 / 140)
    assert fp32["memory_above_baseline"] == pytest.approx(200 / 100)
    assert fp32["size"] == pytest.approx(1.5)
    assert fp32["flop_ideal"] == pytest.approx(1.5)
    assert fp32["latency_vs_ideal"] == pytest.approx(1.2)
    assert out["int8_vs_fp32"]["multitask"] == {"speedup": pytest.approx(2.5), "size": pytest.approx(0.25)}


def test_round_robin_interleaves_contenders_and_drops_the_warmup():
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    times = round_robin(runners, runs=4, warmup=2, progress=False)
    assert calls == list("ABC") * 6
    assert {k: len(v) for k, v in times.items()} == {"A": 4, "B": 4, "C": 4}
    assert all(t >= 0 for v in times.values() for t in v)


def test_round_robin_with_a_seed_shuffles_each_round_reproducibly():
    def order(seed):
        calls = []
        runners = {name: (lambda name=name: calls.append(name)) for name in "ABCDE"}
        times = round_robin(runners, runs=6, warmup=1, progress=False, seed=seed)
        assert {k: len(v) for k, v in times.items()} == dict.fromkeys("ABCDE", 6)
        return ["".join(calls[i:i + 5]) for i in range(0, len(calls), 5)]

    rounds = order(0)
    assert all(sorted(r) == list("ABCDE") for r in rounds)  # every runner once per round
    assert len(set(rounds)) > 1  # not one fixed order
    assert order(0) == rounds and order(1) != rounds


def test_round_robin_by_runtime_times_one_runtime_after_the_other():
    from mtl_tf.bench.timing import round_robin_by_runtime

    calls = []
    runners = {(rt, name): (lambda key=(rt, name): calls.append(key)) for rt in ("tflite", "onnx") for name in "AB"}
    times = round_robin_by_runtime(runners, runs=3, warmup=1)
    assert [rt for rt, _ in calls] == ["tflite"] * 8 + ["onnx"] * 8  # no runtime's run between another's
    assert {k: len(v) for k, v in times.items()} == dict.fromkeys(runners, 3)


def test_additive_ideal_weights_trunk_and_heads_by_their_measured_time():
    from mtl_tf.bench.report import additive_ideal, head_cost_table

    rows = {"trunk": {"p50_ms": 10.0}, "a": {"p50_ms": 12.0}, "b": {"p50_ms": 16.0}, "naive": {"p50_ms": 28.0},
            "multitask": {"p50_ms": 20.0}}
    # Heads take 2 and 6 ms: the multitask model would take 10 + 2 + 6 = 18 ms, the naive set 28.
    assert additive_ideal(rows, ["a", "b"]) == pytest.approx(28 / 18)
    results = {"contenders": {"trunk": {"macs": 5e9}, "a": {"macs": 6e9}, "b": {"macs": 5.5e9},
                              "naive": {"members": ["a", "b"]}},
               "runtimes": {"tflite_fp32": rows}}
    [row] = [line for line in head_cost_table(results) if line.startswith("| tflite_fp32")]
    # trunk 10 ms / 5 GMACs; head a 2 ms / 1 GMAC; head b 6 ms / 0.5 GMAC.
    assert row == "| tflite_fp32 | 10.00 (2.0) | 2.00 (2.0) | 6.00 (12.0) |"


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """`mtl-tf bench` on the tiny recipe, all runtimes, a few runs."""
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", str(TINY_RECIPE), "--out", str(out), "--json", str(out / "results.json"),
            "--runs", "3", "--warmup", "1", "--calibration", "2", "--threads", "1"]
    args += [a for o in OVERRIDES for a in ("--set", o)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "results.json").read_text()), result.output


def test_bench_reports_every_contender_on_every_runtime(tiny_bench):
    out, results, output = tiny_bench
    names = ["trunk", "detection", "segmentation", "naive", "multitask"]
    assert list(results["runtimes"]) == RUNTIMES
    table = (out / "bench.md").read_text()
    for runtime in RUNTIMES:
        assert list(results["runtimes"][runtime]) == names
        for name in names:
            assert f"| {runtime} | {name} |" in table
            assert results["runtimes"][runtime][name]["runs"] == 3
    assert table in output  # printed too
    assert (out / "bench.png").stat().st_size > 0
    assert json.loads((out / "bench.json").read_text()) == results


def test_bench_sizes_params_and_ratios_are_consistent(tiny_bench):
    _, results, _ = tiny_bench
    c = results["contenders"]
    assert c["naive"]["params"] == c["detection"]["params"] + c["segmentation"]["params"]
    assert c["naive"]["macs"] == c["detection"]["macs"] + c["segmentation"]["macs"] > c["multitask"]["macs"]
    for runtime, rows in results["runtimes"].items():
        assert rows["naive"]["size_mb"] == pytest.approx(rows["detection"]["size_mb"] + rows["segmentation"]["size_mb"])
        ratios = results["ratios"][runtime]
        assert ratios["latency"] == pytest.approx(rows["naive"]["p50_ms"] / rows["multitask"]["p50_ms"])
        assert ratios["size"] == pytest.approx(rows["naive"]["size_mb"] / rows["multitask"]["size_mb"])
        assert ratios["flop_ideal"] == pytest.approx(c["naive"]["macs"] / c["multitask"]["macs"])
    fp32, int8 = results["runtimes"]["tflite_fp32"], results["runtimes"]["tflite_int8"]
    assert all(int8[n]["size_mb"] < 0.5 * fp32[n]["size_mb"] for n in fp32)


def test_bench_measures_peak_rss_in_fresh_child_processes(tiny_bench):
    _, results, _ = tiny_bench
    pids = [row["rss_pid"] for rows in results["runtimes"].values() for row in rows.values()]
    assert os.getpid() not in pids and len(set(pids)) == len(pids)  # one fresh process each
    for runtime, rows in results["runtimes"].items():
        baseline = results["baseline_rss_mb"][runtime]
        assert baseline > 0
        # Raw peaks: an interpreter holding a model never uses less than the empty one.
        assert all(row["peak_rss_mb"] > baseline for row in rows.values()), runtime


def test_tflite_memory_children_do_not_load_tensorflow():
    """A LiteRT child importing TensorFlow would measure its ~600 MB, not the interpreter's."""
    import subprocess
    import sys

    code = "import sys, mtl_tf.bench.memory, mtl_tf.bench.timing; assert 'tensorflow' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_bench_int8_artifacts_are_full_integer_builtin_only(tiny_bench):
    from ai_edge_litert.interpreter import Interpreter

    from mtl_tf.export.tflite import builtin_only

    out, results, _ = tiny_bench
    folder = results["meta"]["artifacts"]
    recipe = load_recipe(TINY_RECIPE, OVERRIDES)
    for name in C.model_names(recipe):
        path = C.artifact(folder, name, "tflite_int8")
        assert builtin_only(path) == []
        interpreter = Interpreter(model_path=str(path))
        assert interpreter.get_signature_runner("serve").get_input_details()["image"]["dtype"] == np.uint8
        conv_weights = [t for t in interpreter.get_tensor_details() if t["name"].endswith("convolution") and len(t["shape"]) == 4]
        assert conv_weights and all(t["dtype"] == np.int8 for t in conv_weights)


def test_bench_reuses_cached_artifacts(tiny_bench):
    _, results, _ = tiny_bench
    recipe = load_recipe(TINY_RECIPE, OVERRIDES)
    messages = []
    images = C.calibration_images(recipe, 2)
    C.prepare_artifacts(recipe, Path(results["meta"]["artifacts"]), RUNTIMES, images, log=messages.append)
    assert messages == []  # nothing rebuilt or converted


def test_bench_onnx_artifacts_give_the_tflite_float_outputs(tiny_bench):
    """The ONNX contender is the same serving graph as the float TFLite one: same outputs."""
    from mtl_tf.bench.timing import onnx_runner, tflite_runner

    _, results, _ = tiny_bench
    folder = results["meta"]["artifacts"]
    image = (np.random.default_rng(0).random((*load_recipe(TINY_RECIPE, OVERRIDES).data.image_size, 3)) * 255).astype(np.uint8)
    onnx_out = onnx_runner(C.artifact(folder, "multitask", "onnx"), 1, image)()
    tflite_out = tflite_runner(C.artifact(folder, "multitask", "tflite_fp32"), 1, image)()
    assert set(onnx_out) == set(tflite_out) and len(onnx_out) >= 2
    for name, value in tflite_out.items():
        np.testing.assert_allclose(onnx_out[name], value, atol=2e-4, rtol=1e-3)
