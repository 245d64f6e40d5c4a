"""What a run shows in the terminal and its log: config tree, run plan, final table.

Everything is rendered to plain text with rich and sent through ``logging``,
so the console and the run's log file get the same lines, once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree


def render(renderable: Any, width: int = 100) -> str:
    """Rich renderable -> plain text (no colour codes, so it reads well in log files)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, soft_wrap=False).print(renderable)
    return buffer.getvalue().rstrip()


def _inline(value: Any) -> str:
    if isinstance(value, ListConfig):
        return str(OmegaConf.to_container(value, resolve=True))
    return str(value)


def _call(node: DictConfig) -> str:
    """A nested object config as a call: ``ModelCheckpoint(monitor=val/acc, ...)``."""
    target = str(node.get("_target_", "")).rsplit(".", 1)[-1] or str(node.get("name", ""))
    args = ", ".join(
        f"{k}={_inline(v)}" for k, v in node.items() if not str(k).startswith("_") and k != "name"
    )
    return f"{target}({args})"


def config_tree(cfg: DictConfig) -> Tree:
    """The composed config as a compact tree: settings, then one line per group or object."""
    tree = Tree("config")
    for key, value in cfg.items():
        if not isinstance(value, DictConfig):
            tree.add(f"{key}: {_inline(value)}")
        elif "_target_" in value or not any(isinstance(v, DictConfig) for v in value.values()):
            tree.add(f"{key}: {_call(value)}")
        else:  # a dict of objects, e.g. the callbacks
            branch = tree.add(str(key))
            for sub_key, sub_value in value.items():
                if sub_value is not None:
                    branch.add(f"{sub_key}: {_call(sub_value)}")
    return tree


@dataclass(frozen=True)
class RunPlan:
    """The numbers of a training run, known before its first update."""

    train_images: int
    val_images: int
    test_images: int
    batch_size: int
    batches_per_epoch: int
    epochs: int
    total_updates: int
    device: str
    precision: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_table(plan: RunPlan) -> Table:
    table = Table(title="Run plan", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("training images", f"{plan.train_images:,}"),
        ("validation images", f"{plan.val_images:,}" if plan.val_images else "none"),
        ("test images", f"{plan.test_images:,}"),
        ("batch size", f"{plan.batch_size:,}"),
        ("batches per epoch", f"{plan.batches_per_epoch:,}"),
        ("epochs", f"{plan.epochs:,}"),
        ("optimizer updates", f"{plan.total_updates:,}"),
        ("device", plan.device),
        ("precision", plan.precision),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def results_table(metrics: Mapping[str, float], class_names: Sequence[str]) -> Table:
    """Test accuracy and loss, then accuracy per class by name."""
    table = Table(title="Test results", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("accuracy", f"{metrics['test/acc']:.2%}")
    table.add_row("loss", f"{metrics['test/loss']:.4f}")
    per_class = metrics.get("test/acc_per_class", {})
    for i, name in enumerate(class_names):
        if name in per_class:
            table.add_row(
                f"  {i} {name}", f"{per_class[name]:.2%}", end_section=i == len(class_names) - 1
            )
    return table
