"""The run directory's records: Parquet history, its schema, atomic writes, the events log.

The writer tests need no TensorFlow (``pure``); the round trip goes through ``gt.fit``
(``tf``).
"""

import json
import stat

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from guardtrain.records.atomic import write_atomic
from guardtrain.records.events import EventLog, load_events
from guardtrain.records.history import HISTORY_SCHEMA, HistoryWriter, load_history
from guardtrain.core.stats import STAT_COLUMNS, VarLayout, summarise_chunk

GARBAGE = b"\x00not parquet at all\xff" * 8


def _stats(n, seed=0):
    rng = np.random.default_rng(seed)
    layout = VarLayout(layer_of_var=(0, 0), var_sizes=(3, 1), layer_names=("dense",))
    return summarise_chunk(rng.uniform(0.1, 1.0, (n, 2, 5)), rng.uniform(0.1, 1.0, (n, 4)),
                           layout)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


# -- pure: the writer and the atomic write ------------------------------------------------
@pytest.mark.pure
def test_schema_declares_every_column_once():
    names = HISTORY_SCHEMA.names
    assert len(names) == len(set(names))
    assert names[:4] == ["run_id", "attempt", "step", "epoch"]
    assert names[4:4 + len(STAT_COLUMNS)] == list(STAT_COLUMNS)
    assert HISTORY_SCHEMA.field("finite").type == pa.bool_()
    assert HISTORY_SCHEMA.field("measured").type == pa.bool_()
    assert pa.types.is_integer(HISTORY_SCHEMA.field("grad_norm_argmin").type)
    assert pa.types.is_integer(HISTORY_SCHEMA.field("step").type)
    for name in STAT_COLUMNS:
        if name not in ("grad_norm_argmin", "finite", "measured"):
            assert HISTORY_SCHEMA.field(name).type == pa.float64(), name


@pytest.mark.pure
def test_writer_round_trips_attempts_sorted_by_attempt_then_step(tmp_path):
    writer = HistoryWriter(tmp_path, "run-a")
    s1, s2 = _stats(3, seed=1), _stats(2, seed=2)
    writer.append(attempt=1, steps=np.array([1, 2, 3]), epoch=0, stats=s1,
                  learning_rate=0.1, optimizer="sgd", verdict="healthy")
    # attempt 2 rolled back to step 1: its steps repeat attempt 1's, under another key
    writer.append(attempt=2, steps=np.array([2, 3]), epoch=0, stats=s2,
                  learning_rate=np.array([0.05, 0.04]), optimizer="adam", verdict="healthy")
    writer.relabel_last(2, 1, "stalled")
    writer.flush()

    assert _files(tmp_path / "history") == ["attempt-0001.parquet", "attempt-0002.parquet"]
    table = load_history(tmp_path)
    assert table.schema.equals(HISTORY_SCHEMA, check_metadata=False)
    assert table.column("attempt").to_pylist() == [1, 1, 1, 2, 2]
    assert table.column("step").to_pylist() == [1, 2, 3, 2, 3]
    keys = list(zip(table.column("attempt").to_pylist(), table.column("step").to_pylist()))
    assert len(keys) == len(set(keys))
    assert table.column("learning_rate").to_pylist() == pytest.approx([0.1] * 3 + [0.05, 0.04])
    assert table.column("verdict").to_pylist() == ["healthy"] * 4 + ["stalled"]
    assert table.column("optimizer").to_pylist() == ["sgd"] * 3 + ["adam"] * 2
    assert set(table.column("run_id").to_pylist()) == {"run-a"}
    for name in STAT_COLUMNS:
        got = table.column(name).to_numpy()
        want = np.concatenate([s1[name], s2[name]])
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.pure
def test_flush_rewrites_an_attempt_without_duplicating_rows(tmp_path):
    writer = HistoryWriter(tmp_path, "run-b")
    for chunk in range(3):
        writer.append(attempt=1, steps=np.array([2 * chunk + 1, 2 * chunk + 2]), epoch=chunk,
                      stats=_stats(2, seed=chunk), learning_rate=0.1, optimizer="sgd",
                      verdict="unjudged")
        writer.flush()
    table = load_history(tmp_path)
    assert table.column("step").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert table.column("epoch").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert _files(tmp_path / "history") == ["attempt-0001.parquet"]


@pytest.mark.pure
def test_empty_run_dir_gives_an_empty_table_of_the_schema(tmp_path):
    table = load_history(tmp_path)
    assert table.num_rows == 0
    assert table.schema.equals(HISTORY_SCHEMA, check_metadata=False)


@pytest.mark.pure
def test_write_atomic_writes_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_atomic(target, lambda tmp: open(tmp, "w").write("hello"))
    assert target.read_text() == "hello"
    assert _files(target.parent) == ["file.txt"]


@pytest.mark.pure
def test_write_atomic_leaves_no_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "file.parquet"

    def half_then_crash(tmp):
        with open(tmp, "wb") as f:
            f.write(GARBAGE)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_then_crash)
    assert _files(tmp_path) == []                 # neither the target nor a temp file

    # An existing file is kept whole when a rewrite fails.
    write_atomic(target, lambda tmp: open(tmp, "w").write("old"))
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, lambda tmp: (open(tmp, "wb").write(GARBAGE),
                                          (_ for _ in ()).throw(KeyboardInterrupt())))
    assert target.read_text() == "old"
    assert _files(tmp_path) == ["file.parquet"]


@pytest.mark.pure
def test_write_atomic_gives_the_file_the_usual_permissions(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")                         # what any ordinary write creates
    target = tmp_path / "atomic.txt"
    write_atomic(target, lambda tmp: open(tmp, "w").write("x"))
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.pure
def test_leftover_temp_file_is_ignored_by_readers(tmp_path):
    writer = HistoryWriter(tmp_path, "run-c")
    writer.append(attempt=1, steps=np.array([1, 2]), epoch=0, stats=_stats(2),
                  learning_rate=0.1, optimizer="sgd", verdict="healthy")
    writer.flush()
    before = load_history(tmp_path)
    (tmp_path / "history" / ".attempt-0001.parquet.xyz").write_bytes(GARBAGE)
    (tmp_path / "history" / ".attempt-0002.parquet.k3j").write_bytes(GARBAGE)

    assert load_history(tmp_path).equals(before)
    direct = pq.read_table(tmp_path / "history")
    assert direct.num_rows == 2
    assert direct.column("step").to_pylist() == [1, 2]


@pytest.mark.pure
def test_events_round_trip_with_numpy_values(tmp_path):
    log = EventLog(tmp_path)
    log.add("start", replicas=np.int64(2), lr=np.float32(0.5))
    log.add("verdict", norms=np.array([1.0, 2.0]), label="healthy")
    events = load_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "verdict"]
    assert events[0]["replicas"] == 2 and events[0]["lr"] == pytest.approx(0.5)
    assert events[1]["norms"] == [1.0, 2.0]
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["start", "verdict"]
    assert _files(tmp_path) == ["events.jsonl"]


@pytest.mark.pure
def test_disabled_event_log_writes_nothing(tmp_path):
    log = EventLog(tmp_path, enabled=False)
    log.add("start")
    assert load_events(tmp_path) == [] and log.events == [{"event": "start"}]


# -- tf: through gt.fit ---------------------------------------------------------------------
@pytest.mark.tf
def test_fit_history_round_trips(tmp_path):
    import keras

    import guardtrain as gt

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.02), loss="mse")
    epochs, steps_per_epoch = 3, 3                        # 20 rows in batches of 8
    run_dir = tmp_path / "my-run"

    result = gt.fit(model, x, y, batch_size=8, epochs=epochs, steps_per_loop=2, guard=False,
                    verbose=0, run_dir=run_dir)
    table = gt.load_history(run_dir)

    n = epochs * steps_per_epoch
    assert table.column("step").to_pylist() == list(range(1, n + 1))       # once each
    assert table.column("epoch").to_pylist() == [e for e in range(epochs)
                                                 for _ in range(steps_per_epoch)]
    assert set(table.column("attempt").to_pylist()) == {1}
    assert set(table.column("run_id").to_pylist()) == {result.run_id}   # one id per call
    assert table.column("learning_rate").to_pylist() == pytest.approx([0.02] * n)
    assert set(table.column("optimizer").to_pylist()) == {"sgd"}
    assert all(table.column("finite").to_pylist())
    # Typed as declared: as loaded, and as stored in the file itself.
    assert table.schema.equals(HISTORY_SCHEMA, check_metadata=False)
    stored = pq.read_schema(run_dir / "history" / "attempt-0001.parquet")
    assert stored.equals(HISTORY_SCHEMA, check_metadata=False)
    assert table.equals(result.history)
    assert result.run_dir == run_dir.resolve()

    # A crashed writer's leftover temp file changes nothing for either reader.
    (run_dir / "history" / ".attempt-0001.parquet.xyz").write_bytes(GARBAGE)
    assert gt.load_history(run_dir).equals(table)
    assert pq.read_table(run_dir / "history").num_rows == n


@pytest.mark.pure
def test_rows_carried_through_a_pickled_checkpoint_write_the_same_table(tmp_path):
    # Ray checkpoints pickle state(); a restarted worker restores it and flushes.
    import pickle

    writer = HistoryWriter(tmp_path / "a", "run-d")
    s1 = _stats(4, seed=1)
    s1["measured"] = np.array([True, False, True, False])
    writer.append(attempt=1, steps=np.arange(1, 5), epoch=0, stats=s1,
                  learning_rate=np.full(4, 0.1), optimizer="sgd", verdict="unjudged")
    writer.relabel_last(1, 4, "HEALTHY")
    writer.append(attempt=2, steps=np.arange(3, 6), epoch=1, stats=_stats(3, seed=2),
                  learning_rate=0.01, optimizer="adam", verdict="STALLED")
    restored = HistoryWriter(tmp_path / "b", "run-d")
    restored.restore(pickle.loads(pickle.dumps(writer.state())))
    assert restored.all_rows().equals(writer.all_rows())
    assert restored.all_rows().column("update_norm").null_count == 2
    restored.flush()
    assert load_history(tmp_path / "b").equals(writer.all_rows())


@pytest.mark.pure
def test_an_epoch_end_flush_waits_until_its_cost_is_a_small_share_of_the_time(tmp_path):
    now = [100.0]
    writer = HistoryWriter(tmp_path, "run-e", clock=lambda: now[0])
    path = tmp_path / "history" / "attempt-0001.parquet"

    def add(step):
        writer.append(attempt=1, steps=np.array([step]), epoch=0, stats=_stats(1),
                      learning_rate=0.1, optimizer="sgd", verdict="HEALTHY")

    add(1)
    writer.flush_if_due()                      # nothing written yet: due
    assert pq.read_table(path).num_rows == 1
    writer._last_flush_cost = 2.0              # as if that write had taken 2 s
    add(2)
    now[0] += 2.0 / HistoryWriter.FLUSH_BUDGET - 1
    writer.flush_if_due()                      # 39 s later: not yet
    assert pq.read_table(path).num_rows == 1
    now[0] += 1
    writer.flush_if_due()                      # 40 s: due
    assert pq.read_table(path).num_rows == 2
    add(3)
    writer.flush()                             # the run's end always writes
    assert pq.read_table(path).num_rows == 3


@pytest.mark.pure
def test_a_resumed_writer_numbers_its_attempts_after_the_ones_on_disk(tmp_path):
    first = HistoryWriter(tmp_path, "run-1")
    first.append(attempt=1, steps=np.arange(1, 4), epoch=0, stats=_stats(3), learning_rate=0.1,
                 optimizer="sgd", verdict="HEALTHY")
    first.flush()
    before = pq.read_table(tmp_path / "history" / "attempt-0001.parquet")
    second = HistoryWriter(tmp_path, "run-2", attempt_base=1)
    second.append(attempt=1, steps=np.arange(1, 3), epoch=0, stats=_stats(2),
                  learning_rate=0.1, optimizer="sgd", verdict="HEALTHY")
    second.flush()
    assert _files(tmp_path / "history") == ["attempt-0001.parquet", "attempt-0002.parquet"]
    assert pq.read_table(tmp_path / "history" / "attempt-0001.parquet").equals(before)
    assert load_history(tmp_path).column("attempt").to_pylist() == [1, 1, 1, 2, 2]
    mine = load_history(tmp_path, "run-2")
    assert mine.column("step").to_pylist() == [1, 2] and mine.equals(second.all_rows())


@pytest.mark.pure
def test_nonfinite_steps_under_loss_scaling_count_only_a_non_finite_loss(tmp_path):
    # A loss-scaled step whose scaled gradient overflowed is skipped by the optimizer by
    # design: finite loss, finite=False. Only a non-finite loss is a failure there.
    writer = HistoryWriter(tmp_path, "run-ls")
    stats = _stats(4)
    stats["finite"] = np.array([True, False, True, False])
    stats["loss"] = np.array([1.0, 0.9, np.nan, 0.8])
    writer.append(attempt=1, steps=np.array([1, 2, 3, 4]), epoch=0, stats=stats,
                  learning_rate=0.1, optimizer="sgd", verdict="unjudged")
    assert writer.nonfinite_steps().tolist() == [2, 4]
    assert writer.nonfinite_steps(loss_only=True).tolist() == [3]


@pytest.mark.pure
def test_an_event_whose_write_failed_is_not_kept(tmp_path):
    # Otherwise the end event recorded after the failure would follow a second one.
    (tmp_path / "events.jsonl").mkdir()        # the log cannot be replaced
    log = EventLog(tmp_path)
    with pytest.raises(OSError):
        log.add("end", status="completed")
    assert log.events == []
