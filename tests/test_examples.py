"""The examples run as they are and say what they promise."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_own_model_example_reports_errors_in_every_layer(capsys):
    spec = importlib.util.spec_from_file_location("own_model", ROOT / "examples" / "own_model.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    counts = example.main()
    assert len(counts) == 4 and all(int(c.sum()) > 0 for c in counts.values())
    assert all(int(c[1, :31].sum()) == 0 and int(c[0, 31]) == 0 for c in counts.values())  # bit 31 protected
    assert "per layer: injected / corrected" in capsys.readouterr().out
