"""torchrun with two CPU processes (Gloo) trains to the same weights as one process with the same global batch."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

from minattn.apps import anatomy
from minattn.apps import segmentation as seg

# Two steps of the tiny model on 32x64x32 crops with SGD: AdamW would turn rounding differences in
# near-zero gradients into whole steps (see minattn.apps.segmentation), SGD passes them on at their size.
ARGS = ["--tiny", "--steps", "2", "--crop", "32x64x32", "--samples-per-epoch", "8", "--seed", "3"]
ARGS += ["--optimiser", "sgd", "--lr", "0.01", "--no-validate", "--quiet"]


def test_two_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    data = tmp_path / "halves.pt"
    torch.save(dataclasses.asdict(anatomy.front_back()), data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_XDIST_WORKER", None)
    torchrun = Path(sys.executable).with_name("torchrun")
    module = ["-m", "minattn.apps.segmentation", *ARGS, "--data", str(data)]
    two = subprocess.Popen(
        [str(torchrun), "--standalone", "--nproc_per_node=2", *module, "--batch-size", "1"]
        + ["--dump-params", str(tmp_path / "two"), "--out", str(tmp_path / "two.pt")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # meanwhile, here, the same global batch in one process
    seg.main([*ARGS, "--data", str(data), "--batch-size", "2", "--dump-params", str(tmp_path / "one")])
    output, _ = two.communicate(timeout=300)
    assert two.returncode == 0, output[-3000:]

    rank0, rank1 = (torch.load(tmp_path / "two" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt")
    assert not (tmp_path / "one" / "rank1.pt").exists()
    assert rank0.keys() == rank1.keys() == single.keys() and len(single) > 50
    for name in single:
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.allclose(rank0[name], single[name], rtol=0, atol=1e-6), name

    torch.manual_seed(3)
    start = dict(seg.build_model(tiny=True).named_parameters())
    moved = max((single[n] - start[n]).abs().max().item() for n in single)
    assert moved > 1e-4  # the two steps changed the weights, so agreeing is not trivial
    checkpoint = torch.load(tmp_path / "two.pt")  # written once, by rank 0, with the global batch recorded
    assert checkpoint["record"]["world_size"] == 2 and checkpoint["record"]["global_batch"] == 2
    assert len(checkpoint["record"]["losses"]) == 2
    assert all(torch.equal(checkpoint["model"][n], rank0[n].half()) for n in rank0)  # stored in float16
