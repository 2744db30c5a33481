"""Train the SRGAN generator: stage 1 SRResNet (MSE), stage 2 SRGAN (content + 1e-3 adversarial).

    python -m train.train train/configs/srresnet-x4-lite.yaml
    python -m train.train train/configs/srgan-x4-lite-gan.yaml [--vgg-weights vgg19.pth]
    python -m train.train CONFIG --resume          # continue from the run's last checkpoint

A run writes train/runs/<name>/{last.ckpt, log.csv, final.pt}; `--ship` copies final.pt to
engines/ with its card.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from rtsr.devices import native_bf16
from rtsr.models.config import load_generator_config
from rtsr.models.srgan import Discriminator, Generator
from rtsr.models.weights import ModelCard, load_weights, save_weights
from train.data import PatchSampler, load_split, shift_consistency
from train.evaluate import evaluate_generator, generator_temporal_metrics
from train.vgg import VGG19Features

log = logging.getLogger("train")
RUNS_DIR = Path(__file__).resolve().parent / "runs"
ENGINES_DIR = Path(__file__).resolve().parents[1] / "engines"  # where --ship puts weights and card (the repo's)


def read_config(path: Path, cls: type) -> dict[str, Any]:
    """A YAML config's keys, each one a field of the dataclass `cls` (a typo stops the run)."""
    with Path(path).open() as fh:
        data = yaml.safe_load(fh) or {}
    known = {f.name for f in fields(cls)}
    if set(data) - known:
        raise SystemExit(f"{path}: unknown keys {sorted(set(data) - known)}")
    return data


@dataclass
class TrainConfig:
    """One training run; every number of the run is here, loaded from YAML."""

    name: str
    model: str                      # generator config name or path
    stage: str = "mse"              # "mse" (SRResNet) or "gan" (SRGAN)
    pixel_loss: str = "mse"         # the SRResNet stage's loss: "mse" (the paper's) or "l1" (EDSR's)
    steps: int = 1000
    stop_at: int | None = None      # end here, the lr schedule still that of `steps` (a snapshot before a flaw)
    batch: int = 16
    hr_patch: int = 96
    lr: float = 1e-4
    lr_final: float = 1e-4          # cosine decay from lr to lr_final
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    noise_std: float = 0.0
    chroma_subsample: float = 0.0   # share of LR patches sent through 4:2:0 chroma (video input)
    h264_share: float = 0.0         # share of LR patches sent through an H.264 intra frame (compressed video)
    h264_crf: tuple[int, int] = (18, 32)  # CRF range of those frames, drawn uniformly
    init_from: str | None = None    # weights file to start from (stage 2 starts from stage 1)
    add_skip: bool = False          # with init_from: add the bicubic skip and zero the tail (starts as bicubic)
    add_blocks: int = 0             # with init_from: append this many residual blocks that start as identity
    hr_blur: float = 0.0            # share of HR patches blurred before degrading (soft sources stay soft)
    hr_blur_sigma: tuple[float, float] = (1.5, 3.0)  # that blur's sigma range, HR pixels
    yuv420_share: float = 0.0       # share of LR patches as the video path converts a lossless 4:2:0 frame
    temporal_weight: float = 0.0    # > 0: batches of shifted pairs, + this x their shift_consistency (flicker)
    temporal_border: int = 8        # HR pixels left out at the patch edges by that loss
    ema_decay: float = 0.0          # > 0: evaluate and ship the exponential moving average of the weights
    adversarial_weight: float = 1e-3
    vgg_scale: float = 1 / 12.75    # the paper's rescaling of VGG features
    feature_matching_weight: float = 1.0
    checkpoint_every: int = 250
    eval_every: int = 500
    threads: int = 0                # 0: torch's default
    wheel_photos: bool = True       # add the photos of pinned registry wheels (train/data.py)
    deb_photos: bool = False        # add the photos of pinned Debian packages (train/data.py)
    eval_debs: bool = False         # the learning curve also measures their held-out photos (large: minutes)
    eval_h264_crf: int | None = None  # the learning curve also measures held-out LR through H.264 at this CRF
    eval_flicker: bool = False      # the learning curve also measures flicker (train/evaluate.py's temporal metric)
    precision: str = "fp32"         # "bf16": autocast matmuls/convs (AMX CPUs, CUDA; fp32 where the CPU emulates it)
    kind: str = "psnr"
    description: str = ""

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        data = read_config(path, cls)
        for key in ("betas", "h264_crf", "hr_blur_sigma"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _with_bicubic_skip(generator: Generator) -> Generator:
    """`generator` with the bicubic skip added and its tail conv zeroed: the output starts as the
    bicubic upscale, and the trained body's features are kept for the residual the tail now learns
    (far fewer steps than the skip model from scratch)."""
    if generator.config.skip == "bicubic":
        raise SystemExit("add_skip: the init_from model has the bicubic skip already")
    skipped = Generator(replace(generator.config, skip="bicubic"))
    skipped.load_state_dict(generator.state_dict())
    with torch.no_grad():
        skipped.tail.weight.zero_()
        skipped.tail.bias.zero_()
    return skipped


def _with_more_blocks(generator: Generator, extra: int) -> Generator:
    """`generator` with `extra` residual blocks appended to its body, each starting as the identity
    (its last BatchNorm's scale and shift zeroed): the output is unchanged at the first step, so a
    deeper model trains on from the shipped one's weights instead of from scratch."""
    deeper = Generator(replace(generator.config, num_blocks=generator.config.num_blocks + extra))
    missing, unexpected = deeper.load_state_dict(generator.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("body.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        for block in list(deeper.body)[generator.config.num_blocks:]:
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()
    return deeper


def usable_precision(cfg: TrainConfig, device: torch.device) -> str:
    """The config's precision, but fp32 for bf16 on a CPU that only emulates it: there a srgan-x4
    step took 38 s against 3.2 s in fp32 (AVX2-only AMD EPYC, 1 thread). The card records what ran."""
    if cfg.precision == "bf16" and device.type == "cpu":
        native, why = native_bf16()
        if not native:
            log.warning("%s: bf16 asked for on a CPU without native bf16 (%s): emulated, about 12x slower "
                        "than fp32 here, so training in fp32", cfg.name, why)
            return "fp32"
    return cfg.precision


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device, vgg_weights: Path | None) -> None:
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.init_card: ModelCard | None = None
        if cfg.add_blocks < 0:
            raise SystemExit(f"{cfg.name}: add_blocks must be 0 or more, not {cfg.add_blocks}")
        if cfg.init_from:
            self.generator, self.init_card = load_weights(Path(cfg.init_from))
            if cfg.add_skip:
                self.generator = _with_bicubic_skip(self.generator)
            if cfg.add_blocks:
                self.generator = _with_more_blocks(self.generator, cfg.add_blocks)
        elif cfg.add_skip or cfg.add_blocks:
            raise SystemExit(f"{cfg.name}: add_skip and add_blocks need init_from (a model to change)")
        else:
            self.generator = Generator(load_generator_config(cfg.model))
        if cfg.temporal_weight and cfg.stage != "mse":
            raise SystemExit(f"{cfg.name}: temporal_weight is an MSE-stage (SRResNet) loss")
        if cfg.pixel_loss not in ("mse", "l1") or (cfg.pixel_loss != "mse" and cfg.stage != "mse"):
            raise SystemExit(f"{cfg.name}: pixel_loss must be mse or l1 (l1 in the mse stage), not {cfg.pixel_loss!r}")
        if cfg.precision not in ("fp32", "bf16"):
            raise SystemExit(f"{cfg.name}: precision must be fp32 or bf16, not {cfg.precision!r}")
        self.precision = usable_precision(cfg, device)
        # channels_last: oneDNN and cuDNN convolutions run faster in NHWC (0.75 -> 0.65 s/step, 2 CPU cores)
        self.generator.to(device, memory_format=torch.channels_last).train()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=cfg.betas)
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise SystemExit(f"{cfg.name}: ema_decay must be in [0, 1), not {cfg.ema_decay}")
        # The average of the last ~1/(1-decay) steps' weights, BatchNorm statistics included: the
        # held-out PSNR of single checkpoints wanders by +-0.04 dB from one to the next.
        self.ema = (AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
                    if cfg.ema_decay else None)
        self.discriminator: Discriminator | None = None
        self.vgg: VGG19Features | None = None
        if cfg.stage == "gan":
            self.discriminator = Discriminator().to(device, memory_format=torch.channels_last).train()
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr, betas=cfg.betas)
            if vgg_weights:
                self.vgg = VGG19Features.from_torchvision_weights(vgg_weights).to(device)
        train_images = list(load_split("train", wheels=cfg.wheel_photos, debs=cfg.deb_photos).values())
        self.sampler = PatchSampler(train_images, cfg.hr_patch, self.generator.scale, cfg.seed, cfg.noise_std,
                                    cfg.chroma_subsample, cfg.h264_share, tuple(cfg.h264_crf),
                                    cfg.hr_blur, tuple(cfg.hr_blur_sigma), cfg.yuv420_share)
        self.heldout = load_split("heldout")
        self.heldout_debs = load_split("heldout_debs", debs=True) if cfg.eval_debs else {}
        self.step = 0
        self.wall_time_s = 0.0  # training time of this cycle over all its sessions (kept in the checkpoint)

    @property
    def shipped(self) -> Generator:
        """The weights evaluated and shipped: the moving average where configured, else the last step's."""
        return self.ema.module if self.ema is not None else self.generator

    def update_average(self) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.generator)

    @property
    def content_loss_name(self) -> str:
        if self.cfg.stage == "mse":
            return self.cfg.pixel_loss.upper()
        return "VGG19 phi(5,4)" if self.vgg else "MSE + discriminator feature matching (no VGG19 weights)"

    def _lr_at(self, step: int) -> float:
        cfg = self.cfg
        t = min(step / max(cfg.steps, 1), 1.0)
        return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + torch.cos(torch.tensor(t * torch.pi)).item())

    def _autocast(self) -> torch.autocast:
        """bf16 autocast where configured (and native): 3x faster steps on an AMX CPU; losses are taken in fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _d_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Discriminator logits and its LeakyReLU activations (for feature matching), in one pass."""
        assert self.discriminator is not None
        feats = []
        for layer in self.discriminator.features:
            x = layer(x)
            if isinstance(layer, torch.nn.LeakyReLU):
                feats.append(x)
        return self.discriminator.classifier(self.discriminator.pool(x)), feats

    def train_step(self) -> dict[str, float]:
        shifts: list[tuple[int, int]] = []
        if self.cfg.temporal_weight > 0:
            lr_img, hr, shifts = self.sampler.shifted_pairs(self.cfg.batch // 2)
        else:
            lr_img, hr = self.sampler.batch(self.cfg.batch)
        lr_img, hr = (t.to(self.device, memory_format=torch.channels_last) for t in (lr_img, hr))
        for opt in [self.opt_g] + ([self.opt_d] if self.discriminator else []):
            for group in opt.param_groups:
                group["lr"] = self._lr_at(self.step)
        with self._autocast():
            sr = self.generator(lr_img).float()
        if self.discriminator is None:
            pixel = F.l1_loss(sr, hr) if self.cfg.pixel_loss == "l1" else F.mse_loss(sr, hr)
            losses = {self.cfg.pixel_loss: pixel}
            if shifts:
                losses["shift"] = shift_consistency(sr, shifts, self.cfg.temporal_border)
            loss = pixel + self.cfg.temporal_weight * losses.get("shift", 0.0)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
            return {"loss_g": loss.item(), **{k: v.item() for k, v in losses.items()}}

        # The discriminator runs in fp32: on this CPU its bf16 step measured slower (2.4 s vs 1.7 s).
        d = self.discriminator
        # discriminator step: real -> 1, generated -> 0
        d.requires_grad_(True)
        real_logit, fake_logit = d(hr), d(sr.detach())
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # generator step: content + 1e-3 * adversarial (-log D(G(x))); no gradients for D's weights
        d.requires_grad_(False)
        gen_logit, fake_feats = self._d_forward(sr)
        adversarial = F.binary_cross_entropy_with_logits(gen_logit, torch.ones_like(gen_logit))
        mse = F.mse_loss(sr, hr)
        if self.vgg is not None:
            with self._autocast():
                fake_vgg, real_vgg = self.vgg(sr).float(), self.vgg(hr).float()
            content = F.mse_loss(fake_vgg * self.cfg.vgg_scale, real_vgg * self.cfg.vgg_scale)
        else:
            with torch.no_grad():
                real_feats = self._d_forward(hr)[1]
            fm = sum(F.l1_loss(f, r) for f, r in zip(fake_feats, real_feats)) / len(real_feats)
            content = mse + self.cfg.feature_matching_weight * 1e-2 * fm
        loss_g = content + self.cfg.adversarial_weight * adversarial
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return {"loss_g": loss_g.item(), "mse": mse.item(), "adv": adversarial.item(), "loss_d": loss_d.item()}

    def state(self) -> dict[str, Any]:
        state = {"step": self.step, "wall_time_s": self.wall_time_s,
                 "generator": self.generator.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "sampler_rng": self.sampler.gen.get_state(), "torch_rng": torch.get_rng_state()}
        if self.discriminator is not None:
            state.update(discriminator=self.discriminator.state_dict(), opt_d=self.opt_d.state_dict())
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.wall_time_s = float(state.get("wall_time_s", 0.0))
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sampler.gen.set_state(state["sampler_rng"])
        torch.set_rng_state(state["torch_rng"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def evaluate(self) -> dict[str, float]:
        """Held-out PSNR/SSIM-Y (the cards' set), and where configured the same through H.264 and
        on the Debian packages' held-out photos: the learning curve written to eval.csv."""
        shipped = self.shipped.eval()
        with torch.no_grad():
            generator = shipped.cpu()
            metrics = evaluate_generator(generator, self.heldout)
            if self.cfg.eval_h264_crf is not None:
                crf = self.cfg.eval_h264_crf
                metrics.update({f"{k}_crf{crf}": v for k, v in evaluate_generator(generator, self.heldout, crf).items()})
            if self.cfg.eval_flicker:
                for kind, m in generator_temporal_metrics(generator, self.heldout).items():
                    metrics[f"flicker_{kind}"] = m["flicker"]
            if self.heldout_debs:
                metrics.update({f"{k}_debs": v for k, v in evaluate_generator(generator, self.heldout_debs).items()})
        shipped.to(self.device, memory_format=torch.channels_last)
        self.generator.train()
        return metrics


def _append_curve(path: Path, step: int, elapsed: float, metrics: dict[str, float]) -> None:
    """One row of the held-out learning curve (header on the first row); kept across --resume."""
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["step", "wall_s", *metrics])
        writer.writerow([step, round(elapsed), *metrics.values()])


def _read_curve(path: Path) -> list[dict[str, float]]:
    """The learning curve of eval.csv, for the card: one dict a row (step, wall_s: training seconds so far, metrics)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [{k: (int(v) if k in ("step", "wall_s") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def run(cfg: TrainConfig, resume: bool, vgg_weights: Path | None, device: torch.device,
        runs_dir: Path = RUNS_DIR) -> Path:
    run_dir = runs_dir / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = run_dir / "last.ckpt", run_dir / "log.csv"
    trainer = Trainer(cfg, device, vgg_weights)
    if resume and ckpt_path.is_file():
        trainer.load_state(torch.load(ckpt_path, map_location=device, weights_only=True))
        log.info("resumed %s at step %d", cfg.name, trainer.step)
    else:
        for stale in (log_path, run_dir / "eval.csv"):
            stale.unlink(missing_ok=True)
    with (run_dir / "config.yaml").open("w") as fh:
        yaml.safe_dump(asdict(cfg), fh, sort_keys=False)

    start, first_step, first_wall = time.time(), trainer.step, trainer.wall_time_s
    log_file = log_path.open("a", newline="")
    writer = csv.writer(log_file)
    end = min(cfg.stop_at or cfg.steps, cfg.steps)
    bar = tqdm(total=end, initial=trainer.step, desc=cfg.name, unit="step", mininterval=5)
    while trainer.step < end:
        losses = trainer.train_step()
        if not math.isfinite(losses["loss_g"]):
            raise SystemExit(f"{cfg.name}: loss diverged at step {trainer.step + 1}; lower lr in {cfg.name}'s config")
        trainer.update_average()
        trainer.step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        row = [trainer.step, *(f"{losses[k]:.6g}" for k in sorted(losses))]
        if trainer.step % cfg.eval_every == 0 or trainer.step == end:
            metrics = trainer.evaluate()
            row += [metrics["psnr_y"], metrics["ssim_y"]]
            log.info("step %d held-out %s", trainer.step, "  ".join(f"{k} {v:g}" for k, v in metrics.items()))
            _append_curve(run_dir / "eval.csv", trainer.step, first_wall + time.time() - start, metrics)
        writer.writerow(row)
        if trainer.step % cfg.checkpoint_every == 0 or trainer.step == end:
            trainer.wall_time_s = first_wall + time.time() - start
            log_file.flush()
            torch.save(trainer.state(), ckpt_path.with_suffix(".tmp"))
            ckpt_path.with_suffix(".tmp").replace(ckpt_path)
    bar.close()
    log_file.close()

    elapsed = time.time() - start
    card = ModelCard(
        name=cfg.name, config=trainer.generator.config.to_dict(), kind=cfg.kind, description=cfg.description,
        training={
            "stage": cfg.stage, "steps": end, "batch": cfg.batch, "hr_patch": cfg.hr_patch,
            "optimizer": f"Adam lr {cfg.lr:g}->{cfg.lr_final:g} (cosine"
                         f"{f' over {cfg.steps} steps, stopped at {end}' if end < cfg.steps else ''}), "
                         f"betas {list(cfg.betas)}",
            "content_loss": trainer.content_loss_name,
            "adversarial_weight": cfg.adversarial_weight if cfg.stage == "gan" else 0.0,
            "init_from": cfg.init_from,
            "init_training": trainer.init_card.training if trainer.init_card else None,
            "data": f"train/data.py train split ({len(trainer.sampler.images)} photos shipped by installed packages"
                    f"{' and pinned registry wheels' if cfg.wheel_photos else ''}"
                    f"{' and pinned Debian packages' if cfg.deb_photos else ''}); "
                    "LR = antialiased bicubic x1/scale, 8-bit",
            "precision": trainer.precision, "chroma_subsample": cfg.chroma_subsample,
            **({"h264_share": cfg.h264_share, "h264_crf": list(cfg.h264_crf)} if cfg.h264_share else {}),
            **({"hr_blur": cfg.hr_blur, "hr_blur_sigma": list(cfg.hr_blur_sigma)} if cfg.hr_blur else {}),
            **({"add_skip": True} if cfg.add_skip else {}),
            **({"add_blocks": cfg.add_blocks} if cfg.add_blocks else {}),
            **({"ema_decay": cfg.ema_decay} if cfg.ema_decay else {}),
            **({"yuv420_share": cfg.yuv420_share} if cfg.yuv420_share else {}),
            **({"temporal_weight": cfg.temporal_weight, "temporal_border": cfg.temporal_border}
               if cfg.temporal_weight else {}),
            "hardware": f"{device.type}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}, "
                        f"{torch.get_num_threads()} threads",
            "wall_time_s": round(first_wall + elapsed, 1), "steps_this_session": trainer.step - first_step,
            "seed": cfg.seed, "torch": str(torch.__version__),
            **({"heldout_curve": curve} if (curve := _read_curve(run_dir / "eval.csv")) else {}),
        },
    )
    final = run_dir / "final.pt"
    save_weights(final, trainer.shipped.cpu().eval(), card)
    log.info("wrote %s", final)
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description="train an rtsr generator")
    parser.add_argument("config", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--vgg-weights", type=Path, help="torchvision vgg19 ImageNet state dict (.pth)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="override the config's step count")
    parser.add_argument("--ship", action="store_true", help="copy the result into engines/")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig.load(args.config)
    if args.steps:
        cfg.steps = args.steps
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    final = run(cfg, args.resume, args.vgg_weights, torch.device(args.device))
    if args.ship:
        ship(final, cfg.name)


def ship(final: Path, name: str) -> None:
    """Copy a run's weights and card into engines/ as model `name`."""
    for suffix in (".pt", ".yaml"):
        shutil.copy(final.with_suffix(suffix), ENGINES_DIR / f"{name}{suffix}")
    log.info("shipped %s to %s", name, ENGINES_DIR)


if __name__ == "__main__":
    main()
