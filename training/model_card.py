"""Write MODEL.md for a trained bundle from its model.json, metrics and held-out results.

A classifier bundle (probabilities only) and a detector bundle (with the box output) get
cards of the same shape: what it is, its data, its training, its held-out results, its
files and its limits.
"""
from __future__ import annotations

import dataclasses
import json
import os

from core.project import project_relative

__all__ = ["write_model_card"]

_ENGINES = {"onnx": "ONNX Runtime", "onnx-int8": "ONNX Runtime, int8", "mxnet-symbol": "MXNet symbol",
            "mxnet-params": "MXNet parameters",
            "golden": "the golden batch every engine is checked against as it loads"}


def _table(matrix: list, classes: list) -> str:
    head = "| true \\ predicted | " + " | ".join(classes) + " |"
    rule = "|---" * (len(classes) + 1) + "|"
    rows = [f"| {c} | " + " | ".join(f"{v:,}" for v in row) + " |" for c, row in zip(classes, matrix)]
    return "\n".join([head, rule, *rows])


def _view(title: str, r: dict) -> str:
    per = ", ".join(f"{c} {v:.4f}" for c, v in r["per_class_accuracy"].items())
    cm = r["confusion_matrix"]
    return (f"### {title}\n\n{r['count']:,} samples. Balanced accuracy **{r['balanced_accuracy']:.4f}**; "
            f"accuracy per class: {per}; overall accuracy {r['accuracy']:.4f}.\n\n"
            f"{_table(cm['rows_true_cols_predicted'], cm['classes'])}\n")


def _shown(path: str | None) -> str:
    """``path`` relative to the project when it lies inside it (a card must not name one machine's folders)."""
    return project_relative(path) if path else "none"


def _pairs(values: dict | None) -> str:
    """``{"car": 0.4, "boat": 0.6}`` as ``car 0.4, boat 0.6``."""
    return ", ".join(f"{k} {v}" for k, v in (values or {}).items()) or "—"


def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _collages(results: dict) -> str:
    """The test collages' detection metrics, at the settings a run uses by default."""
    block = results.get("test_collages")
    if not block:
        return ""
    s = block["settings"]
    thresholds = ", ".join(f"{c} {v}" for c, v in s["thresholds"].items())
    rows = []
    for name, collage in block["collages"].items():
        p = collage["parameters"]
        style = f"{p['match']} picks, step {p['step']}, jitter {p['jitter']}"
        for c, m in collage["classes"].items():
            rows.append(f"| {name} ({style}) | {c} | **{_f(m['ap50'])}** | {_f(m['ap'])} | {_f(m['precision'])} | "
                        f"{_f(m['recall'])} | {m['truths']:,} | {m['detections']:,} |")
    return f"""### Test collages

Collages of the CIFAR-10 test set over the Mona Lisa (`collage.make.TEST_COLLAGES`, {p['width']} px wide),
scored at stride {s.get('stride', 16)} with the settings a run uses by default: engine {s['engine']},
thresholds {thresholds}, merge `{s['merge']}` at IoU {s['merge_iou']}. AP as pycocotools computes it; tiles
less than half visible are ignored; precision and recall at the thresholds.

| collage | class | AP50 | AP50:95 | precision | recall | truths | boxes |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
"""


def _files(model: dict) -> str:
    return ", ".join(f"`{entry['path']}` ({_ENGINES.get(key, key)})" for key, entry in model["files"].items())


def _errors(results: dict) -> str:
    by_class = results["test_images"].get("errors_by_original_class", {})
    return ", ".join(f"{c} {n}" for c, n in sorted(by_class.items(), key=lambda kv: -kv[1])) or "none"


def _classifier_card(folder: str, model: dict, results: dict, metrics: list) -> str:
    training = model.get("training", {})
    config = training.get("config", {})
    machine = training.get("machine", {})
    last = metrics[-1] if metrics else {}
    minutes = (training.get("train_time_s") or 0) / 60
    curve = "\n".join(
        f"| {m['epoch']} | {m['loss']:.4f} | {m['val_balanced_accuracy']:.4f} | {m['images_per_s']:.0f} |"
        for m in metrics
    )
    return f"""# Model card: {model['name']}

{_classifier_network(model, config)} that classifies
32x32 RGB windows as **car**, **boat** or **background**, trained with MXNet {training.get('mxnet', '')} by
this project's own pipeline (`training/`). Output columns: {', '.join(model['classes'])}
(probabilities).{_trunk_of(config)}

## Data

CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009), from
`$TILESCAN_DATA/cifar10`. automobile -> car, ship -> boat, the other eight classes -> background.
The 50,000 training images are split into `train` and `val` channels (stratified by class,
{config.get('val_fraction', 0.1):.0%} val, seed {config.get('seed')}), listed in `manifest.csv`. The 10,000
test images were never used for training or for choosing anything: they give the results below.

Each batch mixes unmodified images and 32x32 tiles cut at stride {config.get('tile_stride')} from single-class
canvases ({config.get('canvas_size')}x{config.get('canvas_size')} px, images scattered so that they overlap,
rebuilt every epoch in memory: nothing is written to disk), sampled with class mix
{config.get('class_mix')} (car, boat, background) instead of CIFAR's 1:1:8, with random flips and shifts
of up to {config.get('max_shift')} px.

## Training

{_commands("app.train", folder, config, "classifier", training)}

{config.get('epochs')} epochs of {config.get('tiles_per_epoch'):,} samples, batch {config.get('batch_size')},
SGD with momentum
{config.get('momentum')}, weight decay {config.get('wd')}, {_schedule(config, training, config.get('tiles_per_epoch'))}.
{minutes:.1f} minutes on {machine.get('cpus')} CPU cores ({machine.get('platform', '')}).
Final training loss {last.get('loss', float('nan')):.4f}; per-epoch records in `metrics.jsonl`.

| epoch | loss | val balanced accuracy | images/s |
|---|---|---|---|
{curve}

## Held-out results (CIFAR-10 test set)

Recomputed by `python -m app.evaluate_model --model {_shown(folder)}` (ONNX Runtime engine).

{_view('Unmodified test images', results['test_images'])}
{_view('Tiles of canvases built from test images', results['test_canvas_tiles'])}
{_collages(results)}
## Files

{_files(model)}; `model.json` (classes, input contract, sha256 of each file), `manifest.csv`, `metrics.jsonl`,
`evaluation.json`. The int8 model, where present, is made by `python -m app.quantize` (static
quantisation calibrated on training images, 7-bit weights) and serves `score.py --engine onnxruntime-int8`.

## Limits

Trained on 32x32 CIFAR images: objects much larger or smaller than a window are out of
distribution. Errors on the test images by original CIFAR-10 class: {_errors(results)}.
"""


def _options(config: dict, trainer: str) -> str:
    """The command-line options that give ``config``'s architecture, widths, learning rate and class
    mix, where they are not the defaults, and a detector's ``--init`` where it is not its architecture's."""
    from training.detector import DEFAULT_INITS, DetectorConfig
    from training.train import TrainConfig

    fields = dataclasses.fields(TrainConfig if trainer == "classifier" else DetectorConfig)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    defaults["widths"] = list(defaults["widths"])
    defaults["class_mix"] = list(defaults["class_mix"])
    def shown(value) -> str:  # widths and class mix as the command line takes them: 32,80,192
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    options = "".join(f" --{name.replace('_', '-')} {shown(config[name])}"
                      for name in ("architecture", "widths", "lr", "class_mix")
                      if name in config and config[name] != defaults[name]
                      and (name != "widths" or _valid(config)))
    if trainer != "detector":
        return options
    init = config.get("init")
    if not init:
        return options + " --init none"
    default_init = DEFAULT_INITS[config.get("architecture", "resnet")]
    return options + ("" if project_relative(init) == project_relative(default_init) else f" --init {_shown(init)}")


def _segments(config: dict, training: dict) -> list[dict]:
    """The run's schedule segments as recorded (one, over every epoch, for a run recorded before them)."""
    return training.get("segments") or [{"epochs": [1, config.get("epochs")], "schedule": config.get("epochs")}]


def _commands(program: str, folder: str, config: dict, trainer: str, training: dict) -> str:
    """The command lines that trained the bundle: one per segment of its schedule, the later ones
    resuming with more epochs (a warm restart); ``--epochs`` where it is not the default."""
    from training.detector import DetectorConfig
    from training.train import TrainConfig

    default = (TrainConfig if trainer == "classifier" else DetectorConfig).epochs
    segments = _segments(config, training)
    lines = []
    for k, segment in enumerate(segments):
        schedule = segment["schedule"] or segment["epochs"][1]
        epochs = f" --epochs {schedule}" if schedule != default or len(segments) > 1 else ""
        lines.append(f"    python -m {program} --out {_shown(folder)}{_options(config, trainer)}{epochs}"
                     + (" --resume" if k else ""))
    return "\n".join(lines)


def _schedule(config: dict, training: dict, per_epoch: int) -> str:
    """The learning rate's course over the segments, ``per_epoch`` samples an epoch."""
    from training.loop import learning_rate

    text = f"peak learning rate {config.get('lr')} with warm-up and cosine decay"
    segments = _segments(config, training)
    if len(segments) < 2:
        return text
    steps = per_epoch // config.get("batch_size")
    warmup = int(config.get("warmup_epochs") * steps)
    parts = [f"{text} over the first {segments[0]['epochs'][1]}"]
    for segment in segments[1:]:
        (first, last), schedule = segment["epochs"], segment["schedule"] or segment["epochs"][1]
        restart = learning_rate((first - 1) * steps, schedule * steps, warmup, config.get("lr"))
        parts.append(f"epochs {first}-{last} follow a {schedule}-epoch cosine schedule from its epoch {first} "
                     f"(a warm restart at {restart:.2g}{', down to 0' if last == schedule else ''})")
    return "; ".join(parts)


def _classifier_network(model: dict, config: dict) -> str:
    if not _valid(config):
        return f"A CIFAR ResNet (He et al. 2016, depth {config.get('depth')}, width {config.get('width')})"
    widths = config.get("widths")
    return (f"A padding-free network (`training/valid_net.py`: six 3x3 convolutions without padding at widths "
            f"{widths[0]}, {widths[0]}, {widths[1]}, {widths[1]}, {widths[2]}, {widths[2]}, two 2x2 max-poolings, "
            f"a 1x1 class head; over a band it scores every window at stride {model.get('dense', {}).get('stride')} "
            f"in one pass)")


def _trunk_of(config: dict) -> str:
    if not _valid(config):
        return ""
    return ("\nIts layers are where the padding-free detector's training starts "
            "(`python -m app.train_detector --architecture valid`).")


def _int8_line(model: dict, config: dict) -> str:
    """The int8 model's validation: per CPU kind it was measured on, AP50 against float32 and speed."""
    int8 = model.get("int8") or {}
    validation = int8.get("validation") or {}
    if not validation.get("cpus"):
        return ""
    verdict = ("validated: the default engine" if validation.get("validated")
               else "not validated: fp32 stays the default")
    rows = "\n".join(
        f"| {cpu['cpu']['model']} | {', '.join(cpu['cpu']['isa']) or 'no AVX2'} | {_pairs(cpu['ap50']['int8'])} | "
        f"{_pairs(cpu['ap50']['float32'])} | {cpu['windows_per_s']['int8']:,} / {cpu['windows_per_s']['float32']:,} "
        f"({cpu['int8_speedup']}x) | {'yes' if cpu['holds'] else 'no'} |" for cpu in validation["cpus"])
    paths = sorted({cpu["speed_path"] for cpu in validation["cpus"] if cpu.get("speed_path")})
    timed = f"\nWindows/s timed on {'; '.join(paths)}.\n" if paths else ""
    weights = "7-bit weights, so its integer sums are exact on every x86 CPU" if int8.get("reduce_range") \
        else "full 8-bit weights"
    return f"""Int8 (static quantisation, calibrated on {config.get('collage_size')} px training collages, {weights}):
validation AP50 against fp32 on each kind of CPU it was validated on (`python -m app.validate_int8`;
"CPUID masked" rows ran this host's cores with the instruction sets of an older CPU, localservices/cpus.py),
tolerance {validation.get('tolerance')} per class: **{verdict}**.

| CPU | instruction sets | int8 AP50 | fp32 AP50 | windows/s int8 / fp32, 1 thread | holds |
|---|---|---|---|---|---|
{rows}
{timed}"""


def _detector_card(folder: str, model: dict, results: dict, metrics: list) -> str:
    training = model.get("training", {})
    config = training.get("config", {})
    rule = config.get("rule", {})
    machine = training.get("machine", {})
    minutes = (training.get("train_time_s") or 0) / 60
    curve = "\n".join(
        f"| {m['epoch']} | {m['class_loss']:.4f} | {m['box_loss']:.4f} | {m['val']['balanced_accuracy']:.4f} | "
        f"{m['val']['box_iou_mean']:.3f} | {m['val']['box_iou_at_least_0.5']:.3f} | {m['windows_per_s']:.0f} |"
        for m in metrics
    )
    recommended = model.get("recommended", {})
    validation = recommended.get("validation", {})
    int8_line = _int8_line(model, config)
    return f"""# Model card: {model['name']}

{_architecture(model, config, training)} Output 0: probabilities of {', '.join(model['classes'])}. Output 1: the box
of the object the window sees, relative to the window (`{model.get('boxes', {}).get('encoding')}`:
offsets of the top-left corner and log sizes, in window sides; `tiling.box`). {_start(config)}

## Data

CIFAR-10 (Krizhevsky 2009), automobile -> car, ship -> boat, the other eight -> background; the
training images split into `train` and `val` channels as the classifier's ({config.get('val_fraction', 0.1):.0%}
val, seed {config.get('seed')}, `manifest.csv`). The test set was never used for training or for choosing
anything.

Every epoch builds new collages of the `train` channel with the project's collage generator (about
{config.get('collage_size')} px square; grid step 16-28 with any jitter that keeps every pixel covered; tiles
colour-matched to random synthetic pictures or picked at random) and cuts
{config.get('windows_per_collage'):,} windows per collage at random offsets, most near objects. Windows are
labelled from the geometry (`training.collage_windows.LabelRule`): a window is a **car** or a **boat** when
a counted tile of that class (at least half visible, as the ground truth counts it) has IoU
≥ {rule.get('positive_iou')} with it and shows on ≥ {rule.get('positive_visible')} of its pixels;
**background** when no such tile reaches IoU {rule.get('background_iou')} with {rule.get('background_visible')} of
the pixels; ignored by the class loss in between. Its box target is the tile's box, for any window with
IoU ≥ {rule.get('box_iou')} and ≥ {rule.get('box_visible')} of the pixels. Draws per epoch:
{config.get('windows_per_epoch'):,} windows, class mix {config.get('class_mix')} (car, boat, background),
{config.get('ignored_fraction'):.0%} ignored windows (box loss only), {config.get('negative_fraction'):.0%} of the
background share noise, flat and gradient windows, random horizontal flips; the notebook's exported error
tiles when `--hard-negatives` is given.

## Training

{_commands("app.train_detector", folder, config, "detector", training)}

{config.get('epochs')} epochs, batch {config.get('batch_size')}, SGD with momentum {config.get('momentum')}, weight
decay {config.get('wd')}, {_schedule(config, training, config.get('windows_per_epoch'))}; loss: softmax
cross-entropy plus {config.get('box_weight')} × Huber on the box deltas. {minutes:.1f} minutes on
{machine.get('cpus')} CPU cores ({machine.get('platform', '')}; the slower epochs below
shared the cores with other work). Validation: fixed windows of collages of the `val` channel.

| epoch | class loss | box loss | val balanced accuracy | val box IoU | share IoU ≥ 0.5 | windows/s |
|---|---|---|---|---|---|---|
{curve}

## Recommended settings

Chosen on four validation collages of the `val` channel ({', '.join(validation.get('pictures', []))}) and
recorded in `model.json` (`recommended`); a run uses them unless told otherwise: thresholds
{_pairs(recommended.get('threshold'))}, merge `{recommended.get('merge')}` at IoU {recommended.get('merge_iou')}, engine
{recommended.get('engine', 'onnxruntime')}. Validation AP50 at those settings: {_pairs(validation.get('ap50'))}.
The merge and IoU with the best mean AP50; then per class the highest threshold within
{validation.get('searched', {}).get('ap_tolerance')} of its best AP50.{_stride_line(recommended)}

{int8_line}

## Held-out results (CIFAR-10 test set)

Recomputed by `python -m app.evaluate_model --model {_shown(folder)}`.

{_collages(results)}
{_view('Unmodified test images (the class head)', results['test_images'])}
{_view('Tiles of canvases built from test images', results['test_canvas_tiles'])}
## Files

{_files(model)}; `model.json` (classes, input contract, the box output, recommended settings, sha256 of each
file), `manifest.csv`, `metrics.jsonl`, `evaluation.json`.

## Limits

Trained on collages of 32x32 CIFAR tiles: the objects it finds are tile-sized, on a tile-like
background. Errors of the class head on the test images by original CIFAR-10 class: {_errors(results)}.
"""


def _stride_line(recommended: dict) -> str:
    """How a dense model's stride was chosen, with what each candidate reached."""
    validation = recommended.get("validation", {})
    strides = validation.get("strides")
    if not strides:
        return ""
    searched = validation.get("searched", {})
    found = "; ".join(f"stride {s}: AP50 {_pairs(v['ap50'])}, AP50:95 {_pairs(v['ap'])}" for s, v in strides.items())
    compared = searched.get("compared_stride")
    return (f" The stride, **{recommended.get('stride')}**, has the best mean of AP50 and AP50:95 over the classes "
            f"at its own best settings among {' and '.join(map(str, searched.get('stride', [])))}, a coarser one "
            f"being taken within {searched.get('stride_tolerance')} of it"
            + (f"; stride {compared}, where padded detectors score, is measured to compare with them, never chosen"
               if compared else "") + f" ({found}).")


def _valid(config: dict) -> bool:
    return config.get("architecture") == "valid"


def _architecture(model: dict, config: dict, training: dict) -> str:
    """The card's first sentences: what the network is."""
    trained = f"trained with MXNet {training.get('mxnet', '')} by this project's own pipeline (`training/detector.py`)."
    if not _valid(config):
        return (f"A detector for 32x32 windows: the CIFAR ResNet trunk (He et al. 2016, depth {config.get('depth')}, "
                f"width {config.get('width')}) with two heads, {trained}")
    widths = config.get("widths")
    stride = model.get("dense", {}).get("stride")
    return (f"A padding-free detector for 32x32 windows (`training/valid_net.py`): six 3x3 convolutions without "
            f"padding at widths {widths[0]}, {widths[0]}, {widths[1]}, {widths[1]}, {widths[2]}, {widths[2]}, each "
            f"with batch normalisation and a ReLU, max-pooling 2x2 after the second and the fourth, then the class "
            f"and box heads as 1x1 convolutions; {trained} It sees exactly its window, so over a band it scores "
            f"every window at stride {stride} in one pass, each as if scored alone (`dense` in `model.json`; proved "
            f"when it loads, `engines/dense.py`).")


def _start(config: dict) -> str:
    if not config.get("init"):
        return "Every layer starts from random weights (He initialisation); the box head from zero."
    return (f"The trunk and class head start from the classifier bundle `{_shown(config.get('init'))}`; the box "
            "head from zero.")


def write_model_card(folder: str, results: dict) -> str:
    """Write ``folder/MODEL.md`` from the bundle's files and ``results`` (app.evaluate_model's); returns its path."""
    with open(os.path.join(folder, "model.json")) as fh:
        model = json.load(fh)
    metrics_path = os.path.join(folder, "metrics.jsonl")
    metrics = [json.loads(line) for line in open(metrics_path)] if os.path.exists(metrics_path) else []
    card = _detector_card if model.get("boxes") else _classifier_card
    path = os.path.join(folder, "MODEL.md")
    with open(path, "w") as fh:
        fh.write(card(folder, model, results, metrics))
    return path
