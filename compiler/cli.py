"""The `waferc` command line: compile a model to an artifact directory, run it, inspect it.

Requires `compiler.api` (`compile`, `load`, `CompiledModel`); it is imported when a command needs it,
so `waferc --help` and `waferc inspect` stay fast and never import torch.

Ensures: a `CompilerError` exits with status 1 and its message on stderr, no traceback; click usage
errors exit with status 2; anything else is reported as an internal error (status 2) unless
`--debug` asks for the traceback. A failed compile leaves no OUT directory behind.
"""
from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import click
import numpy as np
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from compiler.artifact import Artifact, check_destination, load_inputs, read_manifest, tool_versions
from compiler.viz import COLOR_MODES as VIZ_COLOR_MODES, FORMATS as VIZ_FORMATS
from ir.errors import ArtifactError, CompilerError, Span
from ir.target import load_target

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2
REPORT_BUG = ("this is a bug in waferc: please report it with the command you ran "
              "(run with `waferc --debug ...` for the traceback)")
# `%name : type = op(...)`, one line per op in the printed IR.
_IR_OP_LINE = re.compile(r"^\s*%[\w.]+\s*:\s*[^=]+?=\s*([A-Za-z_][\w.]*)\s*\(")
_PREVIEW_VALUES = 6
WEIGHT_DTYPES = ("fp16", "bf16", "fp8", "int8")
LAYOUTS = ("throughput", "latency")  # the first is the default


def _api() -> ModuleType:
    # Imported late: it pulls in torch and the whole pipeline.
    return importlib.import_module("compiler.api")


class _WafercGroup(click.Group):
    """Turns exceptions into exit codes and one-message reports."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CompilerError as e:
            click.echo(str(e), err=True)
            ctx.exit(EXIT_USER_ERROR)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"internal error: {type(e).__name__}: {e}", err=True)
            click.echo(f"  hint: {REPORT_BUG}", err=True)
            ctx.exit(EXIT_INTERNAL_ERROR)


class FabricDims(click.ParamType):
    """`W,H` (or `WxH`): a fabric size in PEs, two positive integers."""

    name = "W,H"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*[,xX]\s*(\d+)\s*", str(value))
        if not match or int(match[1]) < 1 or int(match[2]) < 1:
            self.fail(f"expected two positive integers W,H (for example 64,48), got '{value}'", param, ctx)
        return int(match[1]), int(match[2])


class WaferCount(click.ParamType):
    """`auto` (None: as few wafers as the model fits on) or a positive number of wafers."""

    name = "N|auto"

    def convert(self, value, param, ctx) -> int | None:
        if value is None:
            return None
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            self.fail(f"expected a positive number of wafers or 'auto', got '{value}'", param, ctx)
        return int(text)


@click.group(cls=_WafercGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback of internal errors (for waferc developers).")
@click.version_option(tool_versions().get("waferc", "unknown"), prog_name="waferc")
def main(debug: bool) -> None:
    """waferc: compile PyTorch models onto wafer-scale PE meshes and simulate them.

    \b
    A typical session:
      waferc compile examples/mlp.py:model -o out/mlp      # place, emit WKL, write out/mlp/
      waferc inspect out/mlp                               # IR ops, kernels and their regions
      waferc run out/mlp                                   # simulate; outputs, cycles, error vs eager
      waferc viz out/mlp -o mlp.png                        # draw the placement (.svg, .png, .html)

    Errors in the model, the target or an artifact exit with status 1; usage errors and internal
    errors exit with status 2.
    """


# ---------------------------------------------------------------- waferc compile


@main.command("compile")
@click.argument("model", metavar="MODEL")
@click.option("-o", "--output", "out", required=True, metavar="OUT", type=click.Path(path_type=Path),
              help="Artifact directory to write (replaced if it already holds an artifact).")
@click.option("--target", default="toy", show_default=True, metavar="NAME|FILE.toml",
              help="Built-in target (toy, wse2, wse3) or a target TOML file.")
@click.option("--fabric-dims", type=FabricDims(), default=None,
              help="Use a W,H fabric of PEs instead of the target's own size.")
@click.option("--wafers", type=WaferCount(), default="auto", show_default=True, metavar="N|auto",
              help="Wafers to spread the model over; auto uses as few as it fits on.")
@click.option("--max-context", type=click.IntRange(min=1), default=None, metavar="T",
              help="Tokens of context to reserve KV-cache space for (default: the compiler decides).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, metavar="B",
              help="Sequences per pass (also the batch of an hf: model's example inputs).")
@click.option("--weight-dtype", type=click.Choice(WEIGHT_DTYPES), default=None,
              help="Store weights in this type (default: the model's own).")
@click.option("--layout", type=click.Choice(LAYOUTS), default=LAYOUTS[0], show_default=True,
              help="Optimise the placement for tokens/s (throughput) or for time per token (latency).")
@click.option("--defects", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Defective PEs to place around.")
@click.option("--defect-rate", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0,
              show_default=True, metavar="R", help="Fraction of PEs to mark defective at random (from --seed).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Placement solver seed; the same seed gives a byte-identical artifact.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, metavar="S", help="Seconds the placement solver may search.")
@click.option("--timings", is_flag=True,
              help="Record seconds per compile phase in report.json (the artifact then differs between runs).")
@click.option("--viz", is_flag=True,
              help="Also draw the placement: OUT/placement.svg and OUT/report.html (see `waferc viz`).")
def compile_command(model: str, out: Path, target: str, fabric_dims: tuple[int, int] | None,
                    wafers: int | None, max_context: int | None, batch: int, weight_dtype: str | None,
                    layout: str, defects: Path | None, defect_rate: float, seed: int, time_limit: float,
                    timings: bool, viz: bool) -> None:
    """Compile MODEL into the artifact directory OUT.

    \b
    MODEL is one of:
      FILE.py:NAME   NAME is an nn.Module (example inputs from the file's
                     `example_inputs` tuple and optional `example_kwargs` dict)
                     or a function returning (module, example_inputs[, example_kwargs])
      FILE.pt2       a program saved with torch.export.save
      hf:PRESET      a bundled Hugging Face config, e.g. hf:llama-3.1-8b
      hf:DIR         a local directory holding a Hugging Face config.json
    hf: models are compiled size-only (shapes, no weights) for one decode
    step of --batch sequences; the artifact can be inspected, not run.

    \b
    Examples:
      waferc compile examples/mlp.py:model -o out/mlp
      waferc compile model.pt2 -o out/big --target wse3 --fabric-dims 256,256 --time-limit 60
      waferc compile hf:llama-3.1-70b -o out/llama70b --target wse3 --wafers auto --max-context 8192
    """
    # Fail in milliseconds on a bad target or OUT, not after tracing the model.
    if defects is not None and defect_rate:
        raise click.UsageError("give either --defects FILE or --defect-rate R, not both")
    check_destination(out)
    load_target(target)
    with _PhaseDisplay(Console(stderr=True)) as show_phase:
        show_phase(f"loading {model}")
        from compiler.modelspec import resolve_model  # imports torch

        spec = resolve_model(model, batch=batch)
        compiled = _api().compile(spec.model, spec.args, spec.kwargs, target=target,
                                  fabric_dims=fabric_dims, wafers=wafers, max_context=max_context,
                                  batch=batch, weight_dtype=weight_dtype, layout=layout, defects=defects,
                                  defect_rate=defect_rate, seed=seed, time_limit=time_limit,
                                  timings=timings, progress=show_phase)
        show_phase(f"writing {out}")
        compiled.save(out)
        if viz:
            show_phase("drawing the placement")
            pictures = _write_pictures(compiled.artifact, out, getattr(compiled, "compile_seconds", None))
    _print_compile_summary(compiled.artifact, out, target)
    if viz:
        click.echo(f"  pictures    {', '.join(str(p) for p in pictures)}")


def _write_pictures(artifact: Artifact, out: Path, compile_seconds: dict | None) -> list[Path]:
    """placement.svg and report.html beside the artifact's files (they are not in its manifest:
    `waferc viz` can redraw them from the artifact at any time)."""
    from compiler.viz import VizData, write_visualisation

    data = VizData.from_artifact(artifact, str(out))
    return [write_visualisation(data, out / "placement.svg"),
            write_visualisation(data, out / "report.html", compile_seconds=compile_seconds)]


class _PhaseDisplay:
    """The current compile phase on stderr: a spinner on a terminal, one line per phase otherwise."""

    def __init__(self, console: Console):
        self.console = console
        self.status = console.status("starting") if console.is_terminal else None

    def __enter__(self) -> "_PhaseDisplay":
        if self.status:
            self.status.start()
        return self

    def __call__(self, phase: str) -> None:
        if self.status:
            self.status.update(f"[bold]{escape(phase)}[/]...")
        else:
            self.console.print(f"waferc: {phase}...", markup=False, highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()


def _print_compile_summary(artifact: Artifact, out: Path, target: str) -> None:
    report = _json_file(artifact, "report.json", out)
    kernels = report.get("kernels")
    rows = [
        ("kernels", _number(len(kernels) if isinstance(kernels, (list, dict)) else kernels)),
        *_wafer_rows(report),
        ("PEs used", _number(report.get("pes_used"))),
        *_weight_rows(report),
        ("bottleneck", f"{report.get('bottleneck_kernel', '?')} "
                       f"({_number(report.get('bottleneck_cycles'))} cycles/pass{_ideal_ratio(report)})"),
        ("predicted", f"{_number(report.get('passes_per_second'))} passes/s"),
        *_hop_rows(report),
    ]
    click.echo(f"wrote {out} (target {target})")
    for label, value in rows:
        click.echo(f"  {label:<11} {value}")
    if report.get("size_only"):
        click.echo(f"  size-only: the artifact holds no weights and cannot be run; "
                   f"`waferc inspect {out}` shows its placement")


def _weight_rows(report: dict) -> list[tuple[str, str]]:
    """`weights  fp8`, when --weight-dtype stored them in another type than the model's."""
    return [("weights", str(report["weight_dtype"]))] if report.get("weight_dtype") else []


def _wafer_rows(report: dict) -> list[tuple[str, str]]:
    """`wafers  3 used (lower bound 2)`, from whichever of the two numbers the report has."""
    parts = []
    if "wafers_used" in report:
        parts.append(f"{_number(report['wafers_used'])} used")
    if "wafers_lower_bound" in report:
        bound = _number(report["wafers_lower_bound"])
        parts.append(f"(lower bound {bound})" if parts else f"lower bound {bound}")
    return [("wafers", " ".join(parts))] if parts else []


def _hop_rows(report: dict) -> list[tuple[str, str]]:
    if "hop_distance_total" not in report:
        return []
    return [("route hops", f"{_number(report['hop_distance_total'])} in total")]


def _ideal_ratio(report: dict) -> str:
    """The bottleneck over the water-filling ideal in the target's cost model, then by FLOPs
    alone (see passes/wafer_place.py), each where the report has it."""
    parts = [f"{ratio:.3f}x {what}" for key, what in (("bottleneck_ratio_to_ideal_real", "the ideal"),
                                                      ("bottleneck_ratio_to_ideal", "by FLOPs alone"))
             if not isinstance(ratio := report.get(key), bool) and isinstance(ratio, (int, float))]
    return ", " + "; ".join(parts) if parts else ""


# ---------------------------------------------------------------- waferc run


@main.command("run")
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--inputs", type=click.Path(path_type=Path), metavar="FILE.safetensors|FILE.npz",
              help="Named input arrays; without it, the example inputs stored at compile time.")
def run_command(out: Path, inputs: Path | None) -> None:
    """Simulate the compiled artifact OUT and report its outputs and cycle count.

    With the stored example inputs it also reports the largest difference from PyTorch eager.

    \b
    Examples:
      waferc run out/mlp
      waferc run out/mlp --inputs batch.safetensors
    """
    compiled = _api().load(out)
    if compiled.size_only:
        raise ArtifactError(f"'{out}' was compiled size-only (no weights), so it cannot be simulated; "
                            f"`waferc inspect {out}` shows its placement")
    feed = _read_inputs(inputs, compiled.input_names) if inputs is not None else None
    result = compiled.run(feed)
    for name, value in result.outputs.items():
        click.echo(_describe_output(name, np.asarray(value)))
    _print_cycles(result.cycles)
    if result.max_abs_error is not None:
        click.echo(f"max abs error vs eager: {result.max_abs_error:.3g}")


def _read_inputs(path: Path, expected: list[str]) -> dict[str, np.ndarray]:
    feed = load_inputs(path)
    missing = [name for name in expected if name not in feed]
    unexpected = sorted(set(feed) - set(expected))
    if missing or unexpected:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(unexpected)}"
        raise CompilerError(f"inputs file '{path}' {problem}; the model's inputs are: "
                            f"{', '.join(expected) or '(none)'}")
    return feed


def _describe_output(name: str, value: np.ndarray) -> str:
    flat = value.reshape(-1)
    head = flat[:_PREVIEW_VALUES]
    if head.dtype.kind not in "biu":  # bf16/fp8 print as plain floats
        head = head.astype(np.float64)
    values = np.array2string(head, precision=4, separator=", ")
    if flat.size > _PREVIEW_VALUES:
        values = values[:-1] + ", ...]"
    return f"output {name}: shape {tuple(value.shape)} {value.dtype}  {values}"


def _print_cycles(cycles) -> None:
    click.echo(f"latency     {cycles.latency_cycles:,} cycles "
               f"({cycles.latency_seconds * 1e6:.3g} µs at {cycles.clock_hz / 1e9:.3g} GHz)")
    click.echo(f"bottleneck  {cycles.bottleneck_kernel} ({cycles.bottleneck_cycles:,} cycles/pass)")
    click.echo(f"throughput  {_number(cycles.passes_per_second)} passes/s")


# ---------------------------------------------------------------- waferc viz


def _picture_path(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in VIZ_FORMATS:
        raise click.BadParameter(f"'{value}' must end in one of {', '.join(VIZ_FORMATS)}", ctx, param)
    return value


@main.command("viz")
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", "picture", required=True, type=click.Path(path_type=Path, dir_okay=False),
              callback=_picture_path, metavar="FILE.svg|FILE.png|FILE.html",
              help="The picture to write; its suffix picks the format.")
@click.option("--color-by", type=click.Choice(VIZ_COLOR_MODES), default=VIZ_COLOR_MODES[0],
              show_default=True, help="Fill regions by layer, by kernel kind, as a heat map of SRAM "
                                      "use per PE, or of stage time (cycles per pass).")
def viz_command(out: Path, picture: Path, color_by: str) -> None:
    """Draw the placement of the artifact OUT: wafers to scale, one region per kernel.

    SVG and PNG are pictures (for slides and papers); HTML is a self-contained report with
    zoom, pan, tooltips, search, the compile summary and a sortable kernel table.
    Size-only artifacts are drawn too.

    \b
    Examples:
      waferc viz out/llama8b -o llama8b.png
      waferc viz out/llama8b -o llama8b-heat.svg --color-by stage-time
      waferc viz out/llama8b -o report.html
    """
    from compiler.viz import VizData, write_visualisation

    data = VizData.from_artifact(Artifact.read(out), str(out))
    click.echo(f"wrote {write_visualisation(data, picture, color_by)}")


# ---------------------------------------------------------------- waferc inspect


@main.command("inspect")
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
def inspect_command(out: Path) -> None:
    """Show what the artifact OUT holds: IR op histogram, kernels and their regions.

    Reads the artifact only (checksums verified); nothing is compiled or simulated.

    \b
    Example:
      waferc inspect out/mlp
    """
    artifact = Artifact.read(out)
    console = Console()
    ops = op_histogram(_text_file(artifact, "model.ir", out))
    console.print(f"{escape(str(out))}: built by waferc {_built_by(out)}", highlight=False, soft_wrap=True)
    console.print(_histogram_table(ops))
    regions = _json_file(artifact, "placement.json", out).get("regions", [])
    for table in regions_tables(regions):
        console.print(table)


def op_histogram(ir_text: str) -> Counter[str]:
    """How many times each op appears in printed IR (lines `%name : type = op(...)`)."""
    return Counter(m[1] for line in ir_text.splitlines() if (m := _IR_OP_LINE.match(line)))


def _built_by(out: Path) -> str:
    versions = read_manifest(out)["versions"]
    others = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k != "waferc")
    return f"{versions.get('waferc', 'unknown')} ({others})"


def _histogram_table(ops: Counter[str]) -> Table:
    table = Table(title=f"IR: {sum(ops.values())} ops", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("op", overflow="fold")
    table.add_column("count", justify="right")
    for name, count in sorted(ops.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(name, str(count))
    return table


# placement.json region key -> column heading
_REGION_COLUMNS = {"kernel": "kernel", "layer": "layer", "wafer": "wafer", "x": "x", "y": "y", "w": "w",
                   "h": "h", "sram_bytes": "SRAM bytes", "cycles_per_token": "cycles/token"}


def regions_tables(regions: list[dict]) -> list[Table]:
    """One table of all regions on a single wafer; one table per wafer (in the order the regions
    first name them, which is pipeline order) when the placement spans several."""
    by_wafer: dict[object, list[dict]] = {}
    for region in regions:
        by_wafer.setdefault(region.get("wafer", 0), []).append(region)
    if len(by_wafer) <= 1:
        return [_regions_table(regions, f"placement: {len(regions)} kernels", list(_REGION_COLUMNS))]
    per_wafer_columns = [key for key in _REGION_COLUMNS if key != "wafer"]  # the title says which
    return [_regions_table(group, f"placement, wafer {wafer}: {len(group)} of {len(regions)} kernels",
                           per_wafer_columns)
            for wafer, group in by_wafer.items()]


def _regions_table(regions: list[dict], title: str, columns: list[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for key in columns:
        heading = _REGION_COLUMNS[key]
        if key == "kernel":  # long names fold onto a second line rather than squeeze the numbers out
            table.add_column(heading, overflow="fold")
        else:
            table.add_column(heading, justify="left" if key == "layer" else "right", no_wrap=True,
                             min_width=len(heading))
    for region in regions:
        table.add_row(*(_cell(region.get(key)) for key in columns))
    return table


# ---------------------------------------------------------------- waferc port


@main.command("port")
@click.argument("model", metavar="[MODEL]", required=False)
@click.option("--all", "all_dir", type=click.Path(path_type=Path), metavar="DIR", default=None,
              help="Port every model directory (holding config.json) under DIR into one support matrix.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), metavar="DIR", default=None,
              help="Where to write port.json and port.md (default port-NAME), or with --all "
                   "support-matrix.json and .md (default the --all DIR).")
@click.option("--target", default="toy", show_default=True, metavar="NAME|FILE.toml",
              help="Built-in target (toy, wse2, wse3) or a target TOML file.")
@click.option("--fabric-dims", type=FabricDims(), default=None,
              help="Use a W,H fabric of PEs instead of the target's own size.")
@click.option("--wafers", type=WaferCount(), default="auto", show_default=True, metavar="N|auto",
              help="Wafers each module may be spread over; auto uses as few as it fits on.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of an hf: model's random weights and example inputs, and of the placement.")
@click.option("--seq", type=click.IntRange(min=1), default=8, show_default=True, metavar="T",
              help="Tokens in an hf: model's example input.")
@click.option("--max-weight-gb", type=click.FloatRange(min=0, min_open=True), default=2.0,
              show_default=True, metavar="GB", help="Refuse hf: models whose weights exceed this.")
def port_command(model: str | None, all_dir: Path | None, out: Path | None, target: str,
                 fabric_dims: tuple[int, int] | None, wafers: int | None, seed: int, seq: int,
                 max_weight_gb: float) -> None:
    """Port MODEL module by module: what compiles, what does not, where and why.

    One forward pass records every submodule's real inputs; each module type is then exported,
    lowered, placed and simulated on its own (output compared with eager), and the whole model
    last. Exits with status 0 only if the whole model ported (with --all: every model).

    \b
    MODEL is one of:
      hf:PRESET      a bundled config, random weights from --seed
      hf:DIR         a local directory holding config.json, with its
                     *.safetensors weights if it has them (never pickles)
      FILE.py:NAME   as for `waferc compile`

    \b
    Examples:
      waferc port hf:path/to/tiny-llama              # writes port-tiny-llama/port.{json,md}
      waferc port examples/gpt2_tiny.py:model -o build/port-gpt2
      waferc port --all models/                      # writes models/support-matrix.{json,md}
    """
    if (model is None) == (all_dir is None):
        raise click.UsageError("give either MODEL or --all DIR")
    load_target(target)  # fail in milliseconds on a bad target or OUT
    if out is not None and out.exists() and not out.is_dir():
        raise CompilerError(f"output '{out}' exists and is not a directory")
    options = dict(target=target, fabric_dims=fabric_dims, wafers=wafers, seed=seed, seq=seq,
                   max_weight_bytes=int(max_weight_gb * 1e9))
    port = importlib.import_module("compiler.port")  # imports torch
    with _PhaseDisplay(Console(stderr=True)) as show_phase:
        if all_dir is not None:
            ported = _port_all(port, all_dir, out, options, show_phase)
        else:
            ported = _port_one(port, model, out, options, show_phase)
    if not ported:
        click.get_current_context().exit(EXIT_USER_ERROR)


def _port_one(port: ModuleType, model: str, out: Path | None, options: dict, show_phase) -> bool:
    show_phase(f"building {model}")
    report = port.port_model(model, progress=lambda what: show_phase(f"porting {what}"), **options)
    out = out or Path(f"port-{report.name}")
    port.write_report(report, out)
    console = Console()
    console.print(_port_table(port, report))
    for group in port.distinct_failures(report):
        _print_failure(console, group)
    verdict = "ported" if report.ported else f"NOT ported (fails at {report.whole.failed_stage})"
    click.echo(f"whole model {verdict}; {sum(r.ok for r in report.modules)} of "
               f"{len(report.modules)} module types ported")
    click.echo(f"wrote {out / 'port.json'} and {out / 'port.md'}")
    return report.ported


def _port_table(port: ModuleType, report) -> Table:
    table = Table(title=f"port {report.model}: {report.architecture}, weights {report.weights}",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("module type", no_wrap=True)
    table.add_column("#", justify="right", no_wrap=True)
    for stage in port.STAGES:
        table.add_column(stage, no_wrap=True)
    table.add_column("max error", justify="right", no_wrap=True)
    table.add_column("notes", overflow="fold")
    for row in report.rows:
        whole = row is report.whole
        stages = [_stage_markup(port.stage_cell(row.stages[s])) for s in port.STAGES]
        remark = port.row_causes(row) or ("the whole model" if whole else "")
        table.add_row(escape(row.type), str(row.instances), *stages, port.error_cell(row), escape(remark),
                      end_section=row is report.modules[-1] if report.modules else False)
    return table


def _stage_markup(cell: str) -> str:
    return {"ok": "[green]ok[/]", "FAIL": "[bold red]FAIL[/]"}.get(cell, cell)


def _print_failure(console: Console, group) -> None:
    """`lower: unsupported op aten.cumprod.default`, where it is, the source line, what it breaks."""
    f = group.failure
    for line in (f"{f.stage}: {f.what}",
                 f"  in {', '.join(group.modules)} ({f.source_place})",
                 *([f"    {f.source}"] if f.source else []),
                 f"  fails {', '.join(group.types)}"):
        console.print(escape(line), highlight=False, soft_wrap=True)


def _port_all(port: ModuleType, root: Path, out: Path | None, options: dict, show_phase) -> bool:
    matrix = port.port_all(root, progress=lambda what: show_phase(f"porting {what}"), **options)
    out = out or root
    port.write_json(out / "support-matrix.json", matrix.to_json())
    port.write_text(out / "support-matrix.md", matrix.to_markdown())
    table = Table(title=f"support matrix: {len(matrix.rows)} models under {escape(str(root))}",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for heading in ("model", "architecture", "build", *port.STAGES, "types ok"):
        table.add_column(heading, no_wrap=True)
    table.add_column("notes", overflow="fold")
    for row in matrix.rows:
        table.add_row(escape(row.directory), escape(row.architecture),
                      *(_stage_markup(c) for c in row.cells()), row.types_cell(),
                      escape(port.matrix_note(row)))
    Console().print(table)
    click.echo(f"{sum(r.ported for r in matrix.rows)} of {len(matrix.rows)} models ported; "
               f"wrote {out / 'support-matrix.json'} and {out / 'support-matrix.md'}")
    return matrix.ported


# ---------------------------------------------------------------- small helpers


def _text_file(artifact: Artifact, name: str, out: Path) -> str:
    if name not in artifact.files:
        raise ArtifactError(f"'{out}' has no {name}")
    return artifact.files[name].decode("utf-8", errors="replace")


def _json_file(artifact: Artifact, name: str, out: Path) -> dict:
    text = _text_file(artifact, name, out)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"malformed JSON: {e.msg}", Span(str(out / name), e.lineno, e.colno)) from None
    if not isinstance(data, dict):
        raise ArtifactError(f"'{out / name}' must hold a JSON object")
    return data


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _cell(value) -> str:
    if value is None:
        return "-"
    return _number(value) if isinstance(value, (int, float)) else escape(str(value))


if __name__ == "__main__":
    main(prog_name="waferc")
