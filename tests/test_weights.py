from pathlib import Path

import pytest
import torch

from rtsr.errors import RtsrError
from rtsr.models.weights import load_weights, resolve_model


def test_roundtrip_keeps_config_card_and_weights(tiny_weights: Path) -> None:
    g, card = load_weights(tiny_weights)
    assert card.name == "tiny-x4" and card.config["num_blocks"] == 2
    payload = torch.load(tiny_weights, weights_only=True)
    for k, v in g.state_dict().items():
        assert torch.equal(v, payload["state_dict"][k])
    assert tiny_weights.with_suffix(".yaml").is_file()


class Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_file_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "rtsr-weights", "payload": Evil()}, path)
    with pytest.raises(RtsrError, match="not a readable rtsr weights file"):
        load_weights(path)


def test_truncated_file_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.pt"
    bad.write_bytes(tiny_weights.read_bytes()[:1000])
    with pytest.raises(RtsrError):
        load_weights(bad)


def test_mismatched_state_is_refused(tiny_weights: Path, tmp_path: Path) -> None:
    payload = torch.load(tiny_weights, weights_only=True)
    payload["card"]["config"]["channels"] = 16
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(RtsrError, match="does not match"):
        load_weights(bad)


def test_foreign_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(RtsrError, match="not an rtsr weights file"):
        load_weights(path)


def test_unknown_model_name() -> None:
    with pytest.raises(RtsrError, match="unknown model"):
        resolve_model("no-such-model")
