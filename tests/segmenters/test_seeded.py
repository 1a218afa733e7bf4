import torch

from som.segmenters.seeded import seeded_state_dict, seeded_tensor


def test_seeded_weights_depend_only_on_key_shape_and_seed():
    layer = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32), torch.nn.BatchNorm1d(32))
    state = layer.state_dict()
    first, again = seeded_state_dict(state, seed=7), seeded_state_dict(state, seed=7)
    assert all(torch.equal(first[k], again[k]) for k in state)
    other_seed = seeded_state_dict(state, seed=8)
    assert not torch.equal(first["0.weight"], other_seed["0.weight"])
    # every float tensor is re-drawn, zero-initialised biases included; integer buffers are kept
    assert first["0.bias"].abs().min() > 0 and not torch.equal(first["0.bias"], state["0.bias"])
    assert first["2.num_batches_tracked"].dtype == torch.long
    assert torch.equal(first["2.num_batches_tracked"], state["2.num_batches_tracked"])
    assert (first["2.running_var"] > 0.4).all()
    # a matrix keeps unit-scale activations: variance 1/fan_in
    assert abs(first["0.weight"].var().item() * 64 - 1) < 0.1
    assert torch.equal(seeded_tensor("0.weight", (32, 64), 7), first["0.weight"])


def test_keep_leaves_named_tensors_alone():
    state = {"pixel_mean": torch.tensor([123.675, 116.28, 103.53]), "w": torch.zeros(3, 3)}
    out = seeded_state_dict(state, seed=1, keep=lambda key: key == "pixel_mean")
    assert torch.equal(out["pixel_mean"], state["pixel_mean"]) and out["w"].abs().sum() > 0
