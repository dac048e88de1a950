"""Where a run goes and how it is read back: one run per log dir, the first
step of every fit, remote storage, event files read without TensorFlow, and
Keras' printing conventions through public API."""

import ast
import json
import logging
import os
import pathlib
import subprocess
import sys
import uuid
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import gradwatch
from gradwatch import __main__ as cli
from gradwatch import reader
from gradwatch_tensorboard import records, storage
from gradwatch_tensorboard.summary import SummaryWriter
from conftest import rng

ROOT = pathlib.Path(__file__).resolve().parent.parent


def model_named(prefix, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu", name=prefix + "_relu"),
        keras.layers.Dense(8, activation="tanh", name=prefix + "_tanh"),
        keras.layers.Dense(1, name=prefix + "_out"),
    ])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def data(n=64):
    x = rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, x[:, :1]


def fit(model, log_dir, n=64, **kwargs):
    kwargs.setdefault("verbose", 0)
    callback = gradwatch.GradWatch(log_dir, **kwargs)
    model.fit(*data(n), batch_size=16, shuffle=False, verbose=0, callbacks=[callback])
    return callback


def same_record(a, b):
    assert a.layers == b.layers
    np.testing.assert_array_equal(a.steps, b.steps)
    assert a.metrics == b.metrics
    for name in a.metrics:
        np.testing.assert_array_equal(a.metric(name), b.metric(name), err_msg=name)


# -- item 4: one run per log dir ----------------------------------------------


def test_another_model_in_a_used_log_dir_goes_to_a_fresh_sibling(tmp_path):
    log_dir = str(tmp_path / "exp")
    fit(model_named("first"), log_dir, update_freq=1)
    before = gradwatch.load(log_dir)
    with pytest.warns(UserWarning) as caught:
        second = fit(model_named("second"), log_dir, update_freq=1)
    message = str(caught[0].message)
    # It names what the dir holds, why this is another run, and where it goes.
    for words in ("first_relu", "3 layers", "steps 0-3", "first_out",
                  "not in this model", log_dir + "-2"):
        assert words in message, (words, message)
    assert second.log_dir == log_dir + "-2"
    same_record(gradwatch.load(log_dir), before)  # the first run is untouched
    other = gradwatch.load(second.log_dir)
    assert other.layers == ["second_relu", "second_tanh", "second_out"]
    np.testing.assert_array_equal(other.steps, [0, 1, 2, 3])
    assert np.isfinite(other.metric("activation_var")).all()
    # A third model takes the next free name.
    with pytest.warns(UserWarning, match="exp-3"):
        third = fit(model_named("third"), log_dir, update_freq=1)
    assert third.log_dir == log_dir + "-3"


def test_the_same_model_from_step_0_again_is_another_run(tmp_path):
    # A notebook cell run again: same layer names, weights and steps anew.
    log_dir = str(tmp_path / "exp")
    fit(model_named("net"), log_dir, n=128, update_freq=1)  # steps 0-7
    before = gradwatch.load(log_dir)
    with pytest.warns(UserWarning, match="starts again from step 0"):
        again = fit(model_named("net", seed=1), log_dir, update_freq=1)  # 0-3
    assert again.log_dir == log_dir + "-2"
    same_record(gradwatch.load(log_dir), before)
    np.testing.assert_array_equal(gradwatch.load(again.log_dir).steps, np.arange(4))


def test_a_resumed_run_of_the_same_model_continues_in_its_dir(tmp_path):
    log_dir = str(tmp_path / "exp")
    model = model_named("net")
    fit(model, log_dir, update_freq=1)  # steps 0-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = fit(model, log_dir, update_freq=1)  # a new GradWatch: 4-7
    assert resumed.log_dir == log_dir
    assert not os.path.exists(log_dir + "-2")
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, np.arange(8))


# -- item 5: the first step of every fit --------------------------------------


def test_a_short_fit_between_multiples_of_update_freq_records_its_first_step(tmp_path):
    # The case: a 2-step fine-tune starting at iteration 4, with the
    # default update_freq=64, recorded nothing. It records its first step,
    # measured exactly as a run recording every step measures it.
    runs = {}
    for name, update_freq in (("default", gradwatch.DEFAULT_UPDATE_FREQ), ("every", 1)):
        model = model_named("net")
        model.fit(*data(64), batch_size=16, shuffle=False, verbose=0)  # 4 steps, unwatched
        assert int(model.optimizer.iterations.numpy()) == 4
        runs[name] = fit(model, str(tmp_path / name), n=32, update_freq=update_freq)
    default = gradwatch.load(str(tmp_path / "default"))
    every = gradwatch.load(str(tmp_path / "every"))
    np.testing.assert_array_equal(default.steps, [4])
    np.testing.assert_array_equal(every.steps, [4, 5])
    for name in default.metrics:
        np.testing.assert_allclose(default.metric(name)[0], every.metric(name)[0],
                                   rtol=1e-6, err_msg=name)


# -- item 6: remote log dirs ---------------------------------------------------


def test_a_remote_log_dir_is_written_and_read_back_through_gfile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a stray local "ram:" folder would appear
    root = f"ram://gradwatch-{uuid.uuid4().hex}"
    remote = root + "/runs/a"
    fit(model_named("net"), remote, update_freq=1)
    fit(model_named("net"), str(tmp_path / "local"), update_freq=1)
    assert os.listdir(tmp_path) == ["local"]
    run = gradwatch.load(remote)
    assert run.log_dir == remote
    same_record(run, gradwatch.load(str(tmp_path / "local")))
    assert run.init_audit and run.recorded_findings is not None
    # The report finds it under a remote parent, named as a local run would be.
    out, err = _Stream(), _Stream()
    assert cli.main(["report", root + "/runs"], out=out, err=err) == cli.EXIT_OK
    assert out.text.startswith("a: 3 layers, 4 recorded (steps 0\u20133)"), out.text
    # A second model in the remote dir goes to a fresh remote sibling.
    with pytest.warns(UserWarning, match="runs/a-2"):
        other = fit(model_named("other"), remote, update_freq=1)
    assert other.log_dir == remote + "-2" and tf.io.gfile.isdir(remote + "-2")
    assert gradwatch.load(remote + "-2").layers[0] == "other_relu"


def test_storage_paths_and_remote_errors():
    assert storage.is_remote("gs://bucket/runs") and not storage.is_remote("/tmp/runs")
    assert storage.join("gs://bucket/runs/", "a", "b") == "gs://bucket/runs/a/b"
    assert storage.join("runs", "a") == os.path.join("runs", "a")
    missing = f"ram://gradwatch-{uuid.uuid4().hex}/missing"
    # Remote errors are the OSErrors local calls raise, so callers handle both.
    with pytest.raises(FileNotFoundError, match="missing"):
        storage.listdir(missing)
    with pytest.raises(FileNotFoundError, match="missing"):
        gradwatch.load(missing)
    err = _Stream()
    assert cli.main(["report", missing], out=_Stream(), err=err) == cli.EXIT_ERROR
    assert "no such log directory" in err.text


class _Stream:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


# -- item 10: event files without TensorFlow -------------------------------------


def test_masked_crc32c_matches_the_standard_check_value():
    crc = 0xE3069283  # CRC-32C of b"123456789" (RFC 3720)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert records.masked_crc32c(b"123456789") == masked


@pytest.mark.parametrize("damage", ["none", "truncated", "flipped_byte", "garbage_tail"])
def test_the_record_reader_agrees_with_tensorflows(tmp_path, damage):
    path = str(tmp_path / "records")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(30):
            writer.write(os.urandom(1 + 37 * i))
    data = pathlib.Path(path).read_bytes()
    if damage == "truncated":
        data = data[:len(data) * 2 // 3]
    elif damage == "flipped_byte":
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:]
    elif damage == "garbage_tail":
        data += b"\x07" * 50
    pathlib.Path(path).write_bytes(data)
    expected = []
    try:
        for record in tf.compat.v1.io.tf_record_iterator(path):
            expected.append(record)
    except tf.errors.OpError:
        pass
    assert list(records.read_records(path)) == expected
    assert 0 < len(expected) <= 30


# A child process in which `import tensorflow` fails.
_WITHOUT_TENSORFLOW = """
import importlib.abc, json, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is blocked in this test")

sys.meta_path.insert(0, NoTensorFlow())
try:
    import tensorflow
    raise SystemExit("the blocker did not block")
except ImportError:
    pass

import gradwatch
from gradwatch.__main__ import main

run = gradwatch.load(sys.argv[2])
print(json.dumps({"layers": run.layers, "steps": run.steps.tolist(),
                  "gradient_var": run.metric("gradient_var").tolist()}))
sys.stdout.flush()
try:
    gradwatch.load("ram://nowhere/run")
    raise SystemExit("a remote log dir without TensorFlow did not fail")
except ImportError as e:
    assert "tf.io.gfile" in str(e) and "install tensorflow" in str(e), e
code = main(["report", sys.argv[1], "--json"])
assert not [m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")]
sys.exit(code)
"""


def test_report_and_load_work_where_tensorflow_cannot_be_imported(tmp_path):
    for prefix in ("first", "second"):
        fit(model_named(prefix), str(tmp_path / "runs" / prefix), update_freq=1)
    SummaryWriter(str(tmp_path / "runs" / "written"), ["a", "b"]).write_step(
        7, {"gradient_var": [1.0, 2.0]}, {"nonfinite_count": 0.0})
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, str(tmp_path / "runs"),
         str(tmp_path / "runs" / "first")],
        capture_output=True, text=True, timeout=300, cwd=str(ROOT),
    )
    assert done.returncode == cli.EXIT_OK, done.stderr
    loaded_line, report = done.stdout.split("\n", 1)
    loaded = json.loads(loaded_line)
    here = gradwatch.load(str(tmp_path / "runs" / "first"))
    assert loaded["layers"] == here.layers and loaded["steps"] == here.steps.tolist()
    np.testing.assert_array_equal(loaded["gradient_var"], here.metric("gradient_var"))
    out = _Stream()
    assert cli.main(["report", str(tmp_path / "runs"), "--json"], out=out) == cli.EXIT_OK
    assert json.loads(report) == json.loads(out.text)
    assert "tensorflow" not in done.stderr.lower()  # none of its log lines


# -- item 9: public Keras API only ---------------------------------------------


def test_no_private_keras_import():
    for path in [*(ROOT / "gradwatch").glob("*.py"), *(ROOT / "tensorboard_plugin").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("keras.src"), f"{path.name} imports {name}"


def test_messages_follow_keras_interactive_logging(tmp_path, capsys, caplog):
    fit(model_named("net"), str(tmp_path / "shown"), verbose=1)
    assert "GradWatch: watching 3 layers every 64 steps" in capsys.readouterr().out
    keras.config.disable_interactive_logging()
    try:
        with caplog.at_level(logging.INFO, logger="gradwatch"):
            fit(model_named("net"), str(tmp_path / "logged"), verbose=1)
    finally:
        keras.config.enable_interactive_logging()
    assert "GradWatch" not in capsys.readouterr().out
    assert any("GradWatch: watching 3 layers" in r.getMessage() for r in caplog.records)


def test_a_recompiled_model_starts_another_run_and_a_fit_loop_reads_the_dir_once(tmp_path, monkeypatch):
    log_dir = str(tmp_path / "exp")
    model = model_named("net")
    callback = gradwatch.GradWatch(log_dir, update_freq=1, verbose=0)
    reads = []
    describe = gradwatch.reader.describe
    monkeypatch.setattr(gradwatch.reader, "describe", lambda d: reads.append(d) or describe(d))
    for _ in range(3):
        model.fit(*data(), batch_size=16, shuffle=False, verbose=0, callbacks=[callback])
    assert reads == [log_dir]
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, np.arange(12))
    model.compile(keras.optimizers.SGD(0.05), "mse")  # a new optimizer at step 0
    with pytest.warns(UserWarning, match="starts again from step 0"):
        model.fit(*data(), batch_size=16, shuffle=False, verbose=0, callbacks=[callback])
    assert callback.log_dir == log_dir + "-2"
    np.testing.assert_array_equal(gradwatch.load(log_dir).steps, np.arange(12))


def test_a_sibling_of_the_current_directory_has_a_real_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(model_named("first"), ".", update_freq=1)
    with pytest.warns(UserWarning):
        second = fit(model_named("second"), ".", update_freq=1)
    assert second.log_dir == str(tmp_path) + "-2"
    assert gradwatch.load(second.log_dir).layers[0] == "second_relu"


@pytest.mark.parametrize("cut", [0, 3, 40, 700, 5000, 10**6])
def test_describe_agrees_with_load_on_whole_and_damaged_files(tmp_path, cut):
    log_dir = str(tmp_path / "run")
    first = SummaryWriter(log_dir, ["a", "b"])
    for step in range(0, 20, 2):
        first.write_step(step, {"activation_var": [step, 1.0]})
    first.close()
    second = SummaryWriter(log_dir, ["b", "c"])  # a second file, other layers
    for step in range(20, 30):
        second.write_step(step, {"activation_var": [step, 2.0]})
    second.close()
    for path in sorted(pathlib.Path(log_dir).glob("*tfevents*"))[1:]:
        data = path.read_bytes()
        path.write_bytes(data[:max(0, len(data) - cut)])
    run = gradwatch.load(log_dir)
    assert reader.describe(log_dir) == (run.layers, run.steps[0], run.steps[-1])
    assert reader.describe(str(tmp_path / "missing")) is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "events.out.tfevents.x").write_bytes(b"\0" * 100)
    assert reader.describe(str(tmp_path / "other")) is None
