"""Typed task results: every task returns one of these records; run.json and the report read them with fixed keys."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(kw_only=True)
class TaskResult:
    """What every task returns: the files it wrote and the precision of its model passes."""

    files: list[Path] = field(default_factory=list)
    precision: str = "fp32"

    def record(self) -> dict[str, Any]:
        """The task's numbers for run.json (its files are listed apart)."""
        out = asdict(self)
        out.pop("files")
        return out


@dataclass(kw_only=True)
class ConfusionResult(TaskResult):
    """The evaluation split's predictions."""

    split: str
    images: int
    accuracy: float
    per_class_accuracy: dict[str, float | None]
    most_confused: dict[str, str | None]
    top_confusions: list[dict[str, Any]]     # the largest off-diagonal cells: true, pred, images
    rechecked_fp32: int = 0                  # bf16 runs: images whose prediction was re-checked in fp32


@dataclass(kw_only=True)
class VanillaResult(TaskResult):
    """Vanilla gradient maps."""


@dataclass(kw_only=True)
class SmoothGradResult(TaskResult):
    """SmoothGrad maps."""

    n: int
    sigma: float


@dataclass(kw_only=True)
class IGResult(TaskResult):
    """Integrated Gradients maps and completeness gaps."""

    steps: int
    baseline: str
    gap_mean: float
    gap_max: float
    gaps: dict[str, float]


@dataclass(kw_only=True)
class GradCAMResult(TaskResult):
    """Grad-CAM maps."""

    layer: str


@dataclass(kw_only=True)
class LimeResult(TaskResult):
    """LIME of the selected images."""

    samples: int
    superpixels: dict[str, int]
    local_fit_r2: dict[str, float]    # R^2 of lime's local linear fit for the explained class


@dataclass(kw_only=True)
class LimeClassesResult(TaskResult):
    """Per-class LIME on the evaluation split."""

    split: str
    samples: int
    classes: dict[str, dict[str, Any]]


@dataclass(kw_only=True)
class ShapResult(TaskResult):
    """Partition SHAP of the selected images: settings, base values and additivity."""

    max_evals: int
    masker: str
    round_size: int
    base_values: dict[str, float]     # f(fully masked image) for the explained class
    sum: dict[str, float]             # sum of the map: f(image) - base value
    additivity_gap_max: float


@dataclass(kw_only=True)
class OcclusionResult(TaskResult):
    """Occlusion sensitivity maps."""

    patch: int
    stride: int
    max_drop: dict[str, float]


@dataclass(kw_only=True)
class FiltersResult(TaskResult):
    """Filter visualization per layer: filters, their activations on noise, optimised pictures and images."""

    chunk: int
    plain: dict[str, Any]
    robust: dict[str, Any]
    layers: dict[str, dict[str, Any]]    # per layer also "examples": filter -> top images {file, activation}
    examples_split: str = ""             # the split the dataset examples come from
    examples_images: int = 0             # images scanned for them


@dataclass(kw_only=True)
class DeepDreamResult(TaskResult):
    """Deep Dream's objective before and after, per layer."""

    objective: str
    images: list[str]
    layers: dict[str, dict[str, Any]]


@dataclass(kw_only=True)
class ClassModelsResult(TaskResult):
    """The probability each class model reached for its class."""

    reached: dict[str, float]


@dataclass(kw_only=True)
class CompareResult(TaskResult):
    """The comparison grid's methods, in column order."""

    methods: list[str]


@dataclass(kw_only=True)
class WhereResult(TaskResult):
    """Where the maps put their positive mass (Q1): per method on the selected images, per class on the eval split."""

    masks: str                                     # "object+mark", "object" or "none"
    regions: list[str]                             # object / mark / background, or centre / border
    images: int                                    # selected images the method shares are averaged over
    border: float                                  # the border band's width as a share of the side
    area: dict[str, float]                         # region -> mean area share on the selected images
    methods: dict[str, dict[str, float | None]]    # method -> region -> mean share of positive mass
    class_split: str                               # the split of the class maps, or "selected"
    class_layer: str                               # Grad-CAM layer of the class maps
    class_images: dict[str, int]                   # class -> images in its mean map
    class_shares: dict[str, dict[str, float | None]]   # class -> region -> Grad-CAM's mean share
    class_area: dict[str, float | None]            # region -> mean area share on those images
    class_mark: dict[str, dict[str, Any]] | None   # class -> {images, share, area} on its marked images
    mark_accuracy: dict[str, dict[str, Any]] | None    # class -> accuracy with / without the mark (whole split)
    mark_predicted: dict[str, float] | None        # class -> share of the split's marked images predicted as it
    shortcut: dict[str, Any] | None = None         # shortcut.png: its images and the maps' shares on the stamp


@dataclass(kw_only=True)
class TrustResult(TaskResult):
    """Trust metrics per method: means and 95% bootstrap intervals (the full tables are in trust.json)."""

    mode: str
    images: int                               # images in the scored pool
    settings: dict[str, Any]
    skipped: dict[str, str]
    methods: dict[str, dict[str, Any]]        # metric -> mean, metric_ci -> [lo, hi], sanity_check
    source: str = "selected"                  # "validation" (images per class by the model's cost) or "selected"
    images_per_method: dict[str, int] = field(default_factory=dict)
    sanity_images: int = 0
    macs: int = 0                             # multiply-adds per image the image counts were derived from
    vs_random: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)   # gain -> [lo, hi]
    shortcut_class: str | None = None
    shortcut: dict[str, dict[str, Any]] = field(default_factory=dict)   # on-mark share: shortcut class, others


@dataclass(kw_only=True)
class AuditResult(TaskResult):
    """The whole-split audit: settings, split-wide numbers and the most suspicious images."""

    split: str
    images: int
    engine: str
    seconds: float
    layer: str
    grid: int
    steps: int
    border: float
    spot: int
    top: int
    accuracy: float | None
    mean_border_mass: float
    mean_deletion_auc: float
    top_files: list[str]
    top_marked: int | None          # of the top images, how many carry the demo's mark (None without mark masks)
    gradcam_top_marked: int | None  # the same count in the Grad-CAM ranking, before the second look
    rescored: int                   # candidates rescored with IG (the second look)
    ig_steps: int
    rescore_seconds: float
    marked_share: float | None      # the split's share of marked images (what chance would give)
    class_counts: list[int]
    cluster_sizes: Any


@dataclass(kw_only=True)
class ReportResult(TaskResult):
    """The report files and the figures they embed."""

    figures: list[str]
