"""The result row and the results folder's files: validated on load, a
damaged copy replaced by the whole one, repeated rows dropped."""
import json
import warnings

import pytest

from pyvs.results import CSV, FIELDS, RESULTS, PointResult, load_results, write_results


def row(voltage=0.5, strategy="none", seed=0, **kw):
    base = dict(voltage=voltage, strategy=strategy, seed=seed, protect="0x00000000", protected_bits=0, n=10,
                top1=0.5, top1_lo=0.2, top1_hi=0.8, top5=0.9, top5_lo=0.6, top5_hi=0.98, agree=0.9,
                agree_lo=0.6, agree_hi=0.98, top1_loss=0.0, agree_loss=0.1, injected=3, corrected=0,
                injected_per_image=0.3, corrected_per_image=0.0, corrected_per_layer={}, latency_overhead=0.0,
                latency_overhead_bound=0.0, energy_j=1e-4,
                energy_saving=0.7, energy_dynamic_j=8e-5, energy_leakage_j=2e-5, energy_razor_j=0.0,
                energy_replay_j=0.0, max_p=1e-3, injected_per_bit=[0] * 31 + [3],
                corrected_per_bit=[0] * 32, evaluations=1, seconds=1.5)
    base.update(kw)
    return PointResult.from_dict(base)


def test_round_trip_through_both_files(tmp_path):
    rows = [row(), row(0.6, "auto", 2, protect="0xe0000000", protected_bits=3),
            row(0.512, "schedule-drop", 0, protect="0x80000000", protected_bits=1, on_error="drop",
                schedule={"a": 0.51, "b": 0.52}, switches=2.0, switch_overhead=1e-4, energy_switch_j=1e-10,
                dataflow="os")]
    write_results(str(tmp_path), rows, [])
    assert load_results(str(tmp_path))[0] == rows
    csv_text = (tmp_path / CSV).read_text()
    assert csv_text.splitlines()[0] == ",".join(FIELDS)
    (tmp_path / RESULTS).unlink()  # the CSV alone holds every field
    assert load_results(str(tmp_path))[0] == rows


def test_damaged_json_is_replaced_by_a_whole_csv(tmp_path):
    rows = [row(), row(0.6)]
    write_results(str(tmp_path), rows, [])
    (tmp_path / RESULTS).write_text('[{"voltage": 0.5, "strat')  # truncated
    with pytest.warns(UserWarning, match="is damaged .*its 2 rows are taken from results.csv"):
        assert load_results(str(tmp_path))[0] == rows


def test_damaged_csv_is_regenerated_and_both_damaged_is_an_error(tmp_path):
    rows = [row()]
    write_results(str(tmp_path), rows, [])
    (tmp_path / CSV).write_text("garbage\n")
    assert load_results(str(tmp_path))[0] == rows  # results.json is authoritative
    write_results(str(tmp_path), rows, [])
    assert (tmp_path / CSV).read_text().splitlines()[0] == ",".join(FIELDS)
    (tmp_path / RESULTS).write_text("not json")
    (tmp_path / CSV).write_text("garbage\n")
    with pytest.raises(ValueError, match="is damaged .* results.csv cannot replace it"):
        load_results(str(tmp_path))


def test_repeated_rows_are_dropped(tmp_path):
    rows = [row(), row(0.6), row(seed=0, top1=0.1)]  # the third repeats the first's key
    (tmp_path / RESULTS).write_text(json.dumps([r.row() for r in rows]))
    with pytest.warns(UserWarning, match=r"a repeated row for \(0.5, 'none', 0\) is dropped"):
        got = load_results(str(tmp_path))[0]
    assert got == rows[:2]


@pytest.mark.parametrize("change,match", [
    (lambda d: d.pop("top1"), r"lacks the fields \['top1'\]"),
    (lambda d: d.update(seed=1.5), "field 'seed' of a result row must be int"),
    (lambda d: d.update(top1="0.5"), "field 'top1' of a result row must be float"),
    (lambda d: d.update(protect="zz"), "must be a hex mask"),
    (lambda d: d.update(injected_per_bit=[1.5]), "field 'injected_per_bit'"),
    (lambda d: d.update(n=True), "field 'n' of a result row must be int"),
])
def test_malformed_rows_are_refused(change, match):
    d = row().row()
    change(d)
    with pytest.raises(ValueError, match=match):
        PointResult.from_dict(d)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_results("/nonexistent-results-folder")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new folder is not damaged
        assert load_results(str(tmp_path)) == ([], [], {})


def test_a_row_is_its_typed_parts_and_files_hold_it_flat():
    r = row(corrected_per_layer={"a": 0.5})
    assert r.accuracy.top1 == 0.5 and r.counts.injected == 3 and r.costs.energy_saving == 0.7
    assert r.counts.corrected_per_layer == {"a": 0.5}
    flat = r.row()
    assert list(flat) == FIELDS and PointResult.from_dict(flat) == r
    # The columns are those results.csv has always had (a folder from before the parts still reads).
    assert FIELDS[:6] == ["voltage", "strategy", "seed", "protect", "protected_bits", "n"]
    assert FIELDS[-12:] == ["injected_per_bit", "corrected_per_bit", "evaluations", "seconds", "injected_per_layer",
                            "energy_movement_j", "on_error", "energy_switch_j", "switch_overhead", "switches",
                            "schedule", "dataflow"]  # columns added later go last, read with their LATER defaults


def test_a_folder_made_before_the_per_layer_injected_column_still_reads(tmp_path):
    import csv
    r = row(injected_per_layer={"a": 0.3})
    flat = {k: v for k, v in r.row().items() if k not in ("injected_per_layer", "on_error", "energy_movement_j")}
    (tmp_path / RESULTS).write_text(json.dumps([flat]))
    got = load_results(str(tmp_path))[0][0]
    assert got.counts.injected_per_layer == {} and got.accuracy == r.accuracy
    assert got.on_error == "replay" and got.costs.energy_movement_j == 0.0  # what those folders did
    (tmp_path / RESULTS).unlink()
    with open(tmp_path / CSV, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flat))
        w.writeheader()
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()})
    assert load_results(str(tmp_path))[0][0].counts.injected_per_layer == {}
