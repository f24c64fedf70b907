"""Damaged and hostile model files under summary, evaluate, predict and train --resume (issue 12, items 1-5, 7).

Each case below is a file built from a valid model file; every command must end
in one ``Error:`` line naming the file and what is wrong, within bounded time
and memory, without opening any file outside (inotify watches the directory
that external storage, external links and virtual datasets point into).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from . import craft
from .conftest import MAX_RSS_KIB, assert_clean_error, run_batch

COMMANDS = ("summary", "evaluate", "predict", "resume")

#: name -> (builder(valid, path, outside) -> path, fragments every command's error must contain)
CASES = {
    # 1. reads outside the model file
    "external_storage": (lambda v, p, o: craft.edited(v, p, craft.external_storage(o)),
                         ["/model_weights/fc3/bias keeps its data in external files"]),
    "external_link": (lambda v, p, o: craft.edited(v, p, craft.external_link(o)),
                      ["/model_weights/fc3 is an external link"]),
    "soft_link": (lambda v, p, o: craft.edited(v, p, craft.soft_link), ["/model_weights/fc3 is a soft link"]),
    "virtual_dataset": (lambda v, p, o: craft.edited(v, p, craft.virtual_dataset(o)),
                        ["/model_weights/fc3/bias is a virtual dataset"]),
    "gzip_filter": (lambda v, p, o: craft.edited(v, p, lambda f: craft.replace(f, craft.WEIGHT, compression="gzip")),
                    ["fc3/weight is stored through HDF5 filter(s) deflate"]),
    "user_filter": (lambda v, p, o: craft.edited(v, p, craft.user_filter), ["user-defined filter 32001"]),
    # 3. silent garbage
    "nan_weight": (lambda v, p, o: craft.edited(v, p, craft.set_array(craft.BIAS, lambda a: a * np.nan)),
                   ["/model_weights/fc3/bias holds 10 NaN or infinite value(s)"]),
    "inf_weight": (lambda v, p, o: craft.edited(v, p, craft.set_array(craft.WEIGHT, lambda a: a + np.inf)),
                   ["NaN or infinite value(s)"]),
    "garbled_bytes": (lambda v, p, o: craft.garble_bytes(craft.edited(v, p, lambda f: None),
                                                         "model_weights/fc1/weight"),
                      ["/model_weights/fc1/weight fails its checksum"]),
    "int8_weights": (lambda v, p, o: craft.edited(v, p, lambda f: craft.replace(
        f, craft.BIAS, data=np.arange(10, dtype=np.int8))), ["fc3/bias is stored as int8, expected float32"]),
    "float64_weights": (lambda v, p, o: craft.edited(v, p, lambda f: craft.replace(
        f, craft.WEIGHT, dtype=np.float64)), ["fc3/weight is stored as float64, expected float32"]),
    "std_zero": (lambda v, p, o: craft.edited(v, p, craft.set_array("metadata/std", lambda a: a * 0)),
                 ["metadata std", "> 0"]),
    "mean_nan": (lambda v, p, o: craft.edited(v, p, craft.set_array("metadata/mean", lambda a: a * np.nan)),
                 ["field 'metadata mean'", "finite values"]),
    # 4. memory bombs
    "filters_1e9": (lambda v, p, o: craft.edited(v, p, craft.set_config(
        lambda c: craft.layer_config(c, "conv1").update(filters=10 ** 9))),
        ["the architecture's parameters (most in layer 'conv2')", "over the", "NUMBACNN_MAX_GIB"]),
    "units_1e12": (lambda v, p, o: craft.edited(v, p, craft.set_config(
        lambda c: craft.layer_config(c, "fc1").update(units=10 ** 12))),
        ["the architecture's parameters (most in layer 'fc1')", "NUMBACNN_MAX_GIB"]),
    "huge_input": (lambda v, p, o: craft.edited(v, p, craft.set_config(
        lambda c: c.update(input_shape=[1, 10 ** 6, 10 ** 6]))), ["would take", "NUMBACNN_MAX_GIB"]),
    "fill_value_bomb": (lambda v, p, o: craft.edited(v, p, craft.fill_value_bomb),
                        ["/model_weights/fc3/bias (layer 'fc3' 'bias') has shape (10737418240,) in the file"]),
    "unallocated": (lambda v, p, o: craft.edited(v, p, craft.unallocated), ["fc1/weight declares", "but stores 0"]),
    "json_depth_bomb": (lambda v, p, o: craft.edited(v, p, craft.set_attr("/", "model_config", "[" * 100_000
                                                                          + "]" * 100_000, as_json=False)),
                        ["model_config is not valid JSON"]),
    "array_attribute": (lambda v, p, o: craft.edited(v, p, craft.set_attr("/", "format_version", np.arange(1000),
                                                                          as_json=False)),
                        ["attribute 'format_version' of / is not a scalar"]),
    "unknown_version": (lambda v, p, o: craft.edited(v, p, craft.set_attr("/", "format_version", 99, as_json=False)),
                        ["format_version 99 is not supported"]),
    "extra_array": (lambda v, p, o: craft.edited(v, p, lambda f: f.create_dataset(
        "model_weights/fc3/extra", data=np.zeros(3, np.float32))), ["layer 'fc3' has unexpected arrays ['extra']"]),
    "truncated": (lambda v, p, o: _truncated(v, p), []),
    # 5. training state and metadata (read by every command, used by --resume and evaluate)
    "epoch_negative": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "epoch", -5, False)),
                       ["training state field 'epoch' is -5"]),
    "epoch_huge": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "epoch", 10 ** 18, False)),
                   ["training state field 'epoch' is 1000000000000000000"]),
    "history_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "history", "x")),
                        ["training state field 'history'"]),
    "rng_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "rng_state",
                                                                      {"bit_generator": "PCG64", "state": 3})),
                    ["training state field 'rng_state'"]),
    "schedule_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "schedule",
                                                                           {"name": "nope"})),
                         ["training state field 'schedule'"]),
    "early_stopping_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr(
        "training_state", "early_stopping", {"monitor": "nope", "best": 1.0})),
        ["training state field 'early_stopping.monitor'"]),
    "early_stopping_best_nan": (lambda v, p, o: craft.edited(v, p, craft.set_attr(
        "training_state", "early_stopping", {"monitor": "val_loss", "best": float("nan"), "wait": 0})),
        ["training state field 'early_stopping.best' is nan"]),
    "dropout_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "dropout",
                                                                          {"drop": [-1, "x"]})),
                        ["training state field 'dropout'"]),
    "batch_size_zero": (lambda v, p, o: craft.edited(v, p, craft.set_attr("training_state", "batch_size", 0, False)),
                        ["training state field 'batch_size' is 0"]),
    "best_weights_shape": (lambda v, p, o: craft.edited(v, p, lambda f: craft.replace(
        f, "training_state/best_weights/fc3/bias", data=np.zeros(7, np.float32))),
        ["/training_state/best_weights/fc3/bias (layer 'fc3' 'bias') has shape (7,)"]),
    "optimizer_slot_shape": (lambda v, p, o: craft.edited(v, p, lambda f: craft.replace(
        f, "optimizer_state/fc3/bias/m", data=np.zeros(3, np.float32))),
        ["/optimizer_state/fc3/bias/m has shape (3,)"]),
    "optimizer_step": (lambda v, p, o: craft.edited(v, p, craft.set_array("optimizer_state/fc3/bias/step",
                                                                          lambda a: a + 10 ** 9)),
                       ["field 'optimizer_state fc3/bias/step'"]),
    "optimizer_unknown_param": (lambda v, p, o: craft.edited(v, p, lambda f: f.create_dataset(
        "optimizer_state/fc9/bias/m", data=np.zeros(3, np.float32))), ["no parameter 'fc9/bias'"]),
    "optimizer_config": (lambda v, p, o: craft.edited(v, p, craft.set_attr("optimizer_state", "config", {"lr": "x"})),
                         ["field 'optimizer_state.config'"]),
    "data_record_garbage": (lambda v, p, o: craft.edited(v, p, craft.set_attr("metadata", "data_record", [1, 2])),
                            ["damaged data record"]),
    "split_repeats": (lambda v, p, o: craft.edited(v, p, craft.set_array("metadata/split_train",
                                                                         lambda a: a * 0)),
                      ["data record's train indices repeat an image"]),
    "split_out_of_range": (lambda v, p, o: craft.edited(v, p, craft.set_array("metadata/split_test",
                                                                              lambda a: a + 10 ** 6)),
                           ["data record's test indices fall outside"]),
}


def _truncated(valid, path):
    data = open(valid, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[:len(data) // 2])
    return path


def _commands(path, world):
    return {"summary": ["summary", path], "evaluate": ["evaluate", path],
            "predict": ["predict", path, world["inputs"]],
            "resume": ["train", "--resume", path, "--epochs", "3", "--out", path + ".resumed.h5"]}


@pytest.fixture(scope="module")
def outcomes(world):
    """{(case, command): result} for every case and command, from one limited runner process."""
    paths = {name: build(world["valid"], os.path.join(world["cases"], f"{name}.h5"), world["outside"])
             for name, (build, _) in CASES.items()}
    for name, seed in (("flip20_a", 11), ("flip20_b", 12), ("flip20_c", 13)):   # 20 bytes of the first 4 KB
        paths[name] = craft.flip_bytes(world["valid"], os.path.join(world["cases"], f"{name}.h5"), 20, seed, 4096)
    big = craft.edited(world["valid"], os.path.join(world["cases"], "big_3e38.h5"),
                       craft.set_array("model_weights/conv1/weight", lambda a: np.full_like(a, 3e38)))
    paths["big_3e38"] = big
    fifo = os.path.join(world["cases"], "fifo.h5")
    os.mkfifo(fifo)
    paths["fifo"] = fifo
    keys = [(name, cmd) for name in paths for cmd in COMMANDS]
    keys += [("dev_zero", cmd) for cmd in ("evaluate", "predict", "resume")]
    paths["dev_zero"] = "/dev/zero"
    cases = [{"args": _commands(paths[name], world)[cmd]} for name, cmd in keys]
    results, rss, touched = run_batch(cases, world["cases"], world["outside"])
    return {"results": dict(zip(keys, results)), "rss": rss, "touched": touched, "paths": paths}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", sorted(CASES) + ["fifo"])
def test_each_case_is_one_clean_error(outcomes, name, command):
    path = outcomes["paths"][name]
    fragments = CASES[name][1] if name in CASES else ["not a regular file"]
    assert_clean_error(outcomes["results"][(name, command)], path, *fragments)


@pytest.mark.parametrize("command", ("evaluate", "predict", "resume"))
def test_dev_zero_is_refused_unread(outcomes, command):
    assert_clean_error(outcomes["results"][("dev_zero", command)], "/dev/zero", "not a regular file")


@pytest.mark.parametrize("name", ["flip20_a", "flip20_b", "flip20_c"])
@pytest.mark.parametrize("command", COMMANDS)
def test_twenty_flipped_bytes_in_the_first_4kb(outcomes, name, command):
    """The issue's hang: now an error naming the file (the fuzz test covers the other outcome, an intact load)."""
    assert_clean_error(outcomes["results"][(name, command)], outcomes["paths"][name])


def test_huge_finite_weights_fail_at_the_outputs(outcomes):
    """3e38 weights are finite, so the file loads (summary works); evaluate and predict refuse the outputs."""
    res = outcomes["results"]
    assert res[("big_3e38", "summary")]["exit"] == 0
    for cmd in ("evaluate", "predict"):
        assert_clean_error(res[("big_3e38", cmd)], outcomes["paths"]["big_3e38"], "outputs are NaN or infinite")
    assert_clean_error(res[("big_3e38", "resume")])


def test_no_file_outside_was_opened(outcomes):
    assert not outcomes["touched"], f"opened outside the model file: {sorted(outcomes['touched'])}"


def test_memory_and_time_stay_bounded(outcomes):
    assert outcomes["rss"] < MAX_RSS_KIB, f"peak RSS {outcomes['rss']:,} KiB"
    slow = {k: r["seconds"] for k, r in outcomes["results"].items() if r["seconds"] > 5}
    assert not slow, slow

