"""The command line: every user mistake is one line on stderr and exit
status 2, found before any data or model is loaded; Ctrl-C says how to
resume; --version and --help."""
import io
import os

import pytest
import torch

import pyvs
from pyvs import cli

from conftest import CUDA, DATA

WEIGHTS = DATA / "mobilenet_v2_int8_qnnpack_state_dict.pth"


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if a command gets as far as loading data or a model."""
    def refuse(*a, **k):
        raise AssertionError("the command loaded data or a model before checking its arguments")
    monkeypatch.setattr(cli, "_model_and_data", refuse)


def run_cli(args, capsys):
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, command):
    assert code == 2, (code, err)
    # What a terminal shows: progress bars end in carriage returns and clear themselves.
    lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"pyvs {command}: "), err
    assert "Traceback" not in err


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return str(d)


BAD = [  # (argv, expected words in the message)
    (["demo", "--protect-msbs", "40"], "--protect-msbs must be between 0 and --acc-bits"),
    (["demo", "--acc-bits", "7"], "between 8 and 32"),
    (["demo", "--p", "1.5"], "--p (probability per bit per MAC) must be <= 1.0"),
    (["demo", "--p", "nan"], "must be a finite number"),
    (["demo", "--m", "0"], "--m must be an integer in [1, inf]"),
    (["demo", "--on-error", "ignore"], "--on-error 'ignore' is not one of replay, drop"),
    (["demo", "--rows", "-3"], "--rows must be"),
    (["demo", "--seed", str(2**64)], "seed must fit in 64 bits"),
    (["demo", "--m", "100000", "--k", "100000", "--n", "100000"], "more than a demo should run"),
    (["timing", "--vmax", "inf"], "--vmax (V) must be a finite number"),
    (["timing", "--vmin", "0.9", "--vmax", "0.5"], "is below --vmin"),
    (["timing", "--step", "1e-7"], "at most 10000"),
    (["timing", "--step", "0"], "--step (V) must be positive"),
    (["timing", "--vmax", "1.5", "--out", "", "--plot", ""], "outside the timing model's range"),
    (["timing", "--plot", "heat.bmp"], "must end in one of"),
    (["timing", "--out", "/nonexistent-folder/t.json"], "cannot be written"),
    (["timing", "--freq", "-1", "--out", "", "--plot", ""], "must be positive"),
    (["timing", "--guard-band", "-1", "--out", "", "--plot", ""], "guard_band must be >= 0"),
    (["timing", "--timing-model", "event", "--out", "", "--plot", ""], "captures operands from a model: give --data"),
    (["timing", "--timing-model", "magic"], "is not one of event, event-uniform, static-uniform"),
    (["timing", "--v-nominal", "0.2", "--out", "", "--plot", ""], "nominal supply 0.2 V is outside"),
    (["report", "/nonexistent-folder"], "does not exist"),
]


@pytest.mark.parametrize("argv,words", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_arguments_are_one_line(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(argv, capsys)
    _one_line_error(code, err, argv[0])
    assert words in err, err


MODEL_BAD = [
    (["--device", "gpu"], "is not a device"),
    (["--device", "tpu"], "is not a device"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--threads", "-1"], "--threads must be"),
    (["--rows", "0"], "--rows must be"),
    (["--limit", "0"], "--limit must be"),
    (["--acc-bits", "40"], "between 8 and 32"),
    (["--freq", "0"], "must be positive"),
    (["--vth", "2"], "nominal supply 0.9 V is outside the timing model's range (Vth = 2.0"),
    (["--v-nominal", "-1"], "--v-nominal (V) must be positive"),
    (["--dataflow", "rs"], "--dataflow 'rs' is not one of ws, os"),
    (["--cols", "0"], "--cols must be"),
    (["--dvfs-switch-ns", "-1"], "--dvfs-switch-ns must be >= 0.0"),
    (["--supply-decap-nf", "nan"], "--supply-decap-nf must be a finite number"),
    (["--weights", "/nonexistent.pth"], "does not exist"),
    (["--timing-model", "magic"], "is not one of event, event-uniform, static-uniform"),
    (["--calibration-images", "1"], "--calibration-images must be"),
    (["--pairs-per-layer", "0"], "--pairs-per-layer must be"),
    (["--injection", "joint"], "--injection 'joint' is not one of independent, conditioned"),
    (["--injection", "conditioned", "--timing-model", "static-uniform"], "needs the 'event' timing model"),
    (["--guard-band", "-0.5"], "guard_band must be >= 0"),
]


@pytest.mark.parametrize("command", ["run", "sweep", "slack"])
@pytest.mark.parametrize("extra,words", MODEL_BAD)
def test_run_and_sweep_check_arguments_before_loading(command, extra, words, data_dir, capsys, no_loading):
    code, out, err = run_cli([command, "--data", data_dir] + extra, capsys)
    _one_line_error(code, err, command)
    assert words in err, err


@pytest.mark.parametrize("extra,words", [
    (["--voltage", "0.2"], "outside the timing model's range"),
    (["--voltage", "1.5"], "outside the timing model's range"),
    (["--protect", "0x1ffffffff"], "has bits outside the 32-bit accumulator"),
    (["--protect", "0xZZ"], "--protect '0xZZ' is not an integer mask"),
    (["--protect-msbs", "33"], "--protect-msbs must be between 0 and --acc-bits"),
    (["--on-error", "skip"], "--on-error 'skip' is not one of replay, drop"),
    (["--schedule", "expand=x"], "is not KEY=VOLTS"),
    (["--schedule", "bottleneck=0.5"], "['bottleneck'] are not layer kinds"),
    (["--schedule", "expand=0.51,default=-1"], "must be positive"),
    (["--schedule", "expand=0.2,default=0.52"], "outside the timing model's range"),
    (["--seed", "-99999999999999999999"], "seed must fit in 64 bits"),
    (["--json", "/nonexistent-folder/r.json"], "cannot be written"),
])
def test_run_checks_its_own_arguments(extra, words, data_dir, capsys, no_loading):
    code, out, err = run_cli(["run", "--data", data_dir] + extra, capsys)
    _one_line_error(code, err, "run")
    assert words in err, err


@pytest.mark.parametrize("extra,words", [
    (["--seeds", "0,1.5"], "not a comma-separated list of integers"),
    (["--seeds", ","], "--seeds is empty"),
    (["--voltages", "0.9,x"], "not a comma-separated list of numbers"),
    (["--voltages", "0.9,0.9"], "repeated"),
    (["--voltages", "0.9,1.3"], "outside the timing model's range"),
    (["--strategies", "magic"], "unknown strategy"),
    (["--strategies", "msb40"], "at most 32 bits"),
    (["--strategies", "none-drop"], "'-drop' needs protected bits"),
    (["--budget", "-1"], "--budget must be >= 0 points of top-1, got -1"),
    (["--cols", "0"], "--cols must be"),
    (["--replay-cycles", "-1"], "--replay-cycles must be"),
    (["--array-batch", "0"], "--array-batch must be"),
])
def test_sweep_checks_its_own_arguments(extra, words, data_dir, capsys, no_loading):
    code, out, err = run_cli(["sweep", "--data", data_dir] + extra, capsys)
    _one_line_error(code, err, "sweep")
    assert words in err, err


@pytest.mark.parametrize("extra,words", [
    (["--voltages", "0.52,x"], "not a comma-separated list of numbers"),
    (["--voltages", "0.52,1.5"], "outside the timing model's range"),
    (["--latency-budgets", "1,-1"], "--latency-budgets must be per cents in [0, 100]"),
    (["--latency-budgets", "a"], "not a comma-separated list of numbers"),
    (["--groups", "block"], "--groups 'block' is not one of kind, layer"),
    (["--budget", "-1"], "--budget must be >= 0 points of top-1"),
    (["--seed", str(2**64)], "seed must fit in 64 bits"),
    (["--dvfs-switch-ns", "-5"], "--dvfs-switch-ns must be >= 0.0"),
])
def test_schedule_checks_its_own_arguments(extra, words, data_dir, capsys, no_loading):
    code, out, err = run_cli(["schedule", "--data", data_dir] + extra, capsys)
    _one_line_error(code, err, "schedule")
    assert words in err, err


@pytest.mark.parametrize("extra,words", [
    (["--timing-model", "static-uniform"], "use --timing-model event"),
    (["--guard-bands", "0.1,-1"], "--guard-bands must be >= 0"),
    (["--guard-bands", "0.1,x"], "not a comma-separated list of numbers"),
    (["--vmin", "0.9", "--vmax", "0.5"], "is below --vmin"),
    (["--vmin", "0.2"], "outside the timing model's range"),
    (["--step", "0"], "--step (V) must be positive"),
    (["--latency-budget", "-1"], "--latency-budget (%) must be >= 0"),
    (["--budget", "nan"], "must be a finite number"),
    (["--evaluate-below", "-1"], "--evaluate-below must be"),
])
def test_slack_checks_its_own_arguments(extra, words, data_dir, capsys, no_loading):
    code, out, err = run_cli(["slack", "--data", data_dir] + extra, capsys)
    _one_line_error(code, err, "slack")
    assert words in err, err


def test_unwritable_results_folder_before_loading(tmp_path, data_dir, capsys, no_loading):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = run_cli(["sweep", "--data", data_dir, "--out", str(blocker / "out")], capsys)
    _one_line_error(code, err, "sweep")
    assert "cannot write to the output folder" in err


@pytest.mark.skipif(CUDA, reason="checks the message of a machine without a GPU")
def test_cuda_without_a_gpu(data_dir, capsys, no_loading):
    code, out, err = run_cli(["run", "--data", data_dir, "--device", "cuda"], capsys)
    _one_line_error(code, err, "run")
    assert "no CUDA GPU" in err


def _labelled(folder, names, sizes, corrupt=()):
    from torchvision.io import encode_jpeg
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("file,class_index\n")
        for i, (name, (h, w)) in enumerate(zip(names, sizes)):
            f.write(f"{name},{i % 1000}\n")
            path = os.path.join(folder, name)
            if name in corrupt:
                open(path, "wb").write(b"\xff\xd8 not a jpeg")
            else:
                img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
                open(path, "wb").write(encode_jpeg(img).numpy().tobytes())


@pytest.mark.skipif(not WEIGHTS.exists(), reason="needs the shared weights")
def test_corrupt_image_and_bad_weights_are_one_line(tmp_path, capsys):
    d = str(tmp_path / "imgs")
    _labelled(d, ["a.jpg", "b.jpg"], [(240, 300), (224, 224)], corrupt=("b.jpg",))
    code, out, err = run_cli(["run", "--data", d, "--weights", str(WEIGHTS)], capsys)
    _one_line_error(code, err, "run")
    assert "cannot read image" in err and "b.jpg" in err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a torch file")
    _labelled(d, ["a.jpg", "b.jpg"], [(240, 300), (224, 224)])
    code, out, err = run_cli(["run", "--data", d, "--weights", str(junk)], capsys)
    _one_line_error(code, err, "run")
    assert "is not a PyTorch state_dict file" in err


def test_report_on_damaged_rows_is_one_line(tmp_path, capsys):
    (tmp_path / "results.json").write_text('[{"voltage": 0.5}]')
    code, out, err = run_cli(["report", str(tmp_path)], capsys)
    _one_line_error(code, err, "report")
    assert "is damaged" in err and "lacks the fields" in err


@pytest.mark.skipif(not WEIGHTS.exists(), reason="needs the shared weights")
def test_ctrl_c_says_what_was_saved_and_how_to_resume(tmp_path, capsys, monkeypatch):
    import pyvs.sweep as S
    _labelled(str(tmp_path / "imgs"), ["a.jpg", "b.jpg"], [(224, 224)] * 2)
    real = S.Experiment.point
    calls = []

    def interrupt_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(S.Experiment, "point", interrupt_second)
    out_dir = tmp_path / "res"
    code, out, err = run_cli(["sweep", "--data", str(tmp_path / "imgs"), "--weights", str(WEIGHTS),
                              "--voltages", "0.9,0.53", "--strategies", "none", "--out", str(out_dir)], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == (f"pyvs sweep: interrupted; 1 finished points are saved in "
                                           f"{out_dir}/results.json; run the same command again to resume")


def test_version_help_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"pyvs {pyvs.__version__}"
    help_text = cli.build_parser().format_help()
    assert "supply voltage" in help_text and "Razor" in help_text
    parser = cli.build_parser()
    for command in ("run", "sweep"):  # both evaluate every image unless told otherwise
        assert parser.parse_args([command, "--data", "x"]).limit is None


def test_import_pyvs_gives_the_timing_model():
    import importlib
    import subprocess
    import sys
    code = "import pyvs; print(pyvs.timing.error_probabilities([0.9]).shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "torch.Size([1, 32])"
    assert importlib.import_module("pyvs").timing is pyvs.timing


@pytest.mark.slow
@pytest.mark.skipif(not (WEIGHTS.exists() and (DATA / "labels.csv").exists()), reason="needs the shared data")
def test_slack_maps_guard_bands_on_the_real_model(tmp_path, capsys):
    import json
    out = tmp_path / "slack"
    code, text, err = run_cli(["slack", "--data", str(DATA), "--weights", str(WEIGHTS), "--limit", "4",
                               "--calibration-images", "4", "--pairs-per-layer", "256", "--guard-bands", "0.2,1",
                               "--vmin", "0.45", "--vmax", "0.9", "--step", "0.05", "--latency-budget", "0.001",
                               "--out", str(out)], capsys)
    assert code == 0, err
    doc = json.loads((out / "slack.json").read_text())
    low = [r["lowest_v_all_protected"] for r in doc["summary"]]
    # More slack at 0.9 V lets the supply go lower; 0.2 cannot reach 0.5 V.
    assert low[0] is not None and low[1] is not None and low[0] > low[1] and low[0] > 0.5
    g = doc["implied_guard_band"]
    assert g is not None and 0.2 < g < 4 and f"implies a guard-band of {g:.3f}" in text
    assert (out / "slack.png").stat().st_size > 10_000


def test_slack_refuses_a_single_guard_band(data_dir, capsys, no_loading):
    # --guard-band used to be accepted and silently ignored by the slack map.
    code, out, err = run_cli(["slack", "--data", data_dir, "--guard-band", "0.5"], capsys)
    _one_line_error(code, err, "slack")
    assert "--guard-band has no meaning here" in err


def test_protect_mask_that_is_not_a_number_names_the_option(data_dir, capsys, no_loading):
    code, out, err = run_cli(["run", "--data", data_dir, "--protect", "0xZZ"], capsys)
    _one_line_error(code, err, "run")
    assert "--protect '0xZZ' is not an integer mask" in err and "<lambda>" not in err


def test_help_texts_are_plain_text():
    for name, sub in cli.build_parser()._subparsers._group_actions[0].choices.items():
        text = sub.format_help()
        assert "``" not in text and "%(" not in text, name


def test_capture_shows_its_progress(capsys):
    from pyvs.experiment import Experiment
    from pyvs.timing import TimingSpec
    from tinynet import batched, tiny
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=4, pairs_per_layer=64)
    Experiment(q, batched(images, 8), timing=spec, progress=True).layer_timing()
    err = capsys.readouterr().err
    assert "capturing operand pairs" in err and "simulating operand pairs" in err


def test_sweep_says_what_an_old_folder_holds_and_what_full_costs(tmp_path, data_dir, capsys, monkeypatch):
    import pyvs.sweep
    from tinynet import batched, tiny
    _, images, q = tiny()
    monkeypatch.setattr(cli, "_model_and_data", lambda *a, **k: (q, batched(images, 8), 0))
    out = str(tmp_path / "res")
    argv = ["sweep", "--data", data_dir, "--timing-model", "static-uniform", "--out", out, "--no-report"]
    assert cli.main(argv + ["--voltages", "0.9,0.6"]) == 0
    capsys.readouterr()
    assert cli.main(argv + ["--voltages", "0.9,0.55"]) == 0
    assert f"{out} holds 6 points; this grid adds 3 (meta.json records the union)" in capsys.readouterr().out
    monkeypatch.setattr(pyvs.sweep, "sweep", lambda *a, **k: [])  # the cost is said before anything runs
    assert cli.main(argv + ["--full"]) == 0
    err = capsys.readouterr().err
    assert "--full on the CPU: 606 points" in err and "evaluations of 24 images" in err


def test_run_takes_any_torchvision_cnn_by_post_training_int8(tmp_path, capsys):
    import json
    import torchvision
    _labelled(str(tmp_path / "imgs"), ["a.jpg", "b.jpg", "c.jpg"], [(224, 224)] * 3)
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # random float weights: the speed is the point
    code, out, err = run_cli(["run", "--data", str(tmp_path / "imgs"), "--model", "resnet18", "--weights", str(weights),
                              "--ptq-images", "2", "--timing-model", "static-uniform", "--voltage", "0.5",
                              "--json", str(tmp_path / "r.json")], capsys)
    assert code == 0, err
    assert "resnet18, post-training int8 on the first 2 images" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["point"]["injected"] > 0 and len(doc["point"]["injected_per_layer"]) == 21  # 20 convs + fc
    code, out, err = run_cli(["run", "--data", str(tmp_path / "imgs"), "--model", "resnet7"], capsys)
    _one_line_error(code, err, "run")
    assert "--model 'resnet7' is neither mobilenet_v2_int8 nor a torchvision classifier" in err
