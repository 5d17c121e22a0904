"""CV example: a tiny CNN on scikit-learn's digits (1,797 8x8 images that ship inside scikit-learn), a seeded
80/20 split, a few epochs on the CPU. Runs the same in the cv kernel and in the cv image:

    python themes/cv/example/train.py --model-dir /tmp/model                    # in the kernel
    inv train --theme cv --entry-point themes/cv/example/train.py               # a job in the image
    INSTANCE_COUNT=2 inv train --theme cv --entry-point themes/cv/example/train.py   # two hosts, one process group

On several hosts the SageMaker training toolkit starts it with torchrun (the job carries
sagemaker_torch_distributed_enabled), which sets RANK / WORLD_SIZE / MASTER_ADDR: the processes join one gloo
process group, each trains on its shard (DistributedSampler) and DistributedDataParallel averages the gradients.
Rank 0 writes model.pt and metrics.json to SM_MODEL_DIR and prints `validation:accuracy=…` lines.
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))  # a job: the project's SEED
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    args, _ = parser.parse_known_args()  # SageMaker may pass more hyperparameters than this script uses
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")
    return args


def digits(seed: int) -> tuple[TensorDataset, TensorDataset]:
    images, labels = load_digits(return_X_y=True)
    images = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    labels = torch.tensor(labels, dtype=torch.long)
    train_idx, val_idx = train_test_split(range(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    return TensorDataset(images[train_idx], labels[train_idx]), TensorDataset(images[val_idx], labels[val_idx])


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the same arithmetic whatever the machine's core count: the same metrics everywhere
    torch.use_deterministic_algorithms(True)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun (the toolkit's torch_distributed)
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1:
        dist.init_process_group("gloo")
        print(f"process group: rank {rank} of {world_size} (master {os.environ.get('MASTER_ADDR')})", flush=True)

    train_set, val_set = digits(args.seed)
    sampler = DistributedSampler(train_set, world_size, rank, shuffle=True, seed=args.seed) if world_size > 1 else None
    loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        shuffle=sampler is None,
        generator=torch.Generator().manual_seed(args.seed),
    )
    model = tiny_cnn()
    trained = nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        trained.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(trained(images), labels)
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss.item():.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        images, labels = val_set.tensors
        logits = model(images)
        metrics = {
            "validation:accuracy": round(float((logits.argmax(1) == labels).float().mean()), 6),
            "validation:loss": round(float(loss_fn(logits, labels)), 6),
        }
    distributed = {"world_size": world_size}
    if world_size > 1:
        # Proof of one process group: every rank contributes its rank, and DDP left the same weights on each.
        ranks = torch.tensor([float(rank)])
        dist.all_reduce(ranks)
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
        spread = torch.cat([checksum, -checksum])
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)  # (max, -min) of the checksum over the ranks
        distributed |= {
            "rank_sum": float(ranks.item()),
            "weights_differ_by": float(spread[0] + spread[1]),
            "train_rows_per_rank": len(sampler),
        }
        dist.destroy_process_group()
    if rank != 0:
        return  # the model dir is shared by the hosts: rank 0 writes it

    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), model_dir / "model.pt")
    (model_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "distributed": distributed, "data": "sklearn digits"}, indent=2)
    )
    # The model carries its handler and the architecture's source (SageMaker's convention: code/ in model.tar.gz).
    (model_dir / "code").mkdir(exist_ok=True)
    for name in ("inference.py", "train.py"):
        shutil.copy(Path(__file__).with_name(name), model_dir / "code" / name)


if __name__ == "__main__":
    main()
