"""fl.utils.Progbar: Keras's format (counter, bar, ETA, time per step, values), driven
by a fake clock so nothing depends on real time."""
import io

import pytest

import fastlayers as fl
from fastlayers.utils import progbar as P


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    t = [1000.0]
    monkeypatch.setattr(P, "_clock", lambda: t[0])
    return t


def test_eta_and_time_per_step_while_running(clock):
    out = TTY()
    bar = fl.utils.Progbar(10, interval=0, file=out)
    clock[0] += 1.0          # first step slow (left out of the estimate)
    bar.update(1, [("loss", 1.0)])
    clock[0] += 0.2
    bar.update(2, [("loss", 3.0)])
    line = out.getvalue().split("\r")[-1]
    assert line.startswith(" 2/10 [=====>") and "ETA: 1s" in line and "200ms/step" in line
    # a running mean over steps: (1 + 3) / 2
    assert "loss: 2.0000" in line


def test_finished_line_has_total_time_and_newline(clock):
    out = TTY()
    bar = fl.utils.Progbar(3, interval=0, file=out)
    for i in range(3):
        clock[0] += 2.0
        bar.update(i + 1, [("acc", 0.5)])
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("3/3 [==============================] - 6s 2s/step - acc: 0.5000")
    assert last.endswith("\n") and "ETA" not in last


def test_interval_limits_redraws(clock):
    out = TTY()
    bar = fl.utils.Progbar(100, interval=0.05, file=out)
    for i in range(1, 11):
        clock[0] += 0.01
        bar.update(i)
    assert out.getvalue().count("\r") == 2  # at 0.05 s and 0.10 s


def test_not_a_terminal_writes_only_the_final_line(clock):
    out = io.StringIO()
    bar = fl.utils.Progbar(4, file=out)
    for i in range(4):
        clock[0] += 1
        bar.update(i + 1, [("loss", 0.5)])
    assert out.getvalue() == "4/4 [==============================] - 4s 1s/step - loss: 0.5000\n"


def test_verbose_2_one_line_and_0_nothing(clock):
    out = io.StringIO()
    bar = fl.utils.Progbar(5, verbose=2, file=out)
    for i in range(5):
        clock[0] += 0.004
        bar.update(i + 1, [("loss", 0.0001)])
    assert out.getvalue() == "5/5 - 0s - 4ms/step - loss: 1.0000e-04\n"
    out = io.StringIO()
    bar = fl.utils.Progbar(5, verbose=0, file=out)
    bar.update(5, [("loss", 1.0)])
    assert out.getvalue() == ""


def test_nan_is_shown_as_NaN(clock):
    out = io.StringIO()
    bar = fl.utils.Progbar(1, verbose=2, file=out)
    clock[0] += 1
    bar.update(1, [("loss", float("nan")), ("val_loss", float("inf"))])
    assert "loss: NaN" in out.getvalue() and "val_loss: inf" in out.getvalue()


def test_stateful_metrics_shown_as_given_and_dict_values(clock):
    out = TTY()
    bar = fl.utils.Progbar(3, interval=0, stateful_metrics=["acc"], file=out)
    bar.update(1, [("acc", 1.0), ("loss", 1.0)])
    bar.update(2, [("acc", 0.0), ("loss", 0.0)])
    line = out.getvalue().split("\r")[-1]
    assert "acc: 0.0000e+00" in line and "loss: 0.5000" in line
    bar.update(3, {"loss": 9.0})  # dicts hold running means already
    assert "loss: 9.0000" in out.getvalue().split("\r")[-1]


def test_add_and_unknown_target(clock):
    out = TTY()
    bar = fl.utils.Progbar(None, interval=0, unit_name="batch", file=out)
    clock[0] += 0.5
    bar.add(1)
    clock[0] += 0.5
    bar.add(2)
    assert "      3/Unknown" in out.getvalue() and "ms/batch" in out.getvalue()


def test_formats():
    assert P.format_time_per_unit(0) == " 0s/step"
    assert P.format_time_per_unit(2.4) == " 2s/step"
    assert P.format_time_per_unit(0.0123) == " 12ms/step"
    assert P.format_time_per_unit(0.000045, "sample") == " 45us/sample"
    assert P.format_eta(42.7) == "42s" and P.format_eta(125) == "2:05"
    assert P.format_eta(3725) == "1:02:05"


def test_fit_verbose_2_prints_one_line_per_epoch(capsys):
    import numpy as np

    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile("sgd", "mse")
    model.fit(np.ones((8, 2), "float32"), np.zeros((8, 1), "float32"), epochs=2, batch_size=4,
              verbose=2)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("2/2")]
    assert len(lines) == 2 and all("/step - loss:" in l for l in lines)
