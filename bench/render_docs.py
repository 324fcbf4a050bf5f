"""Render the documentation's data-driven parts: result tables from bench/results/*.json into README.md and
docs/*.md, and docs/configuration.md from configs/*.yaml, so that neither can drift from its source.

    python bench/render_docs.py            # rewrite what differs, name each file written
    python bench/render_docs.py --check    # write nothing; exit 1 naming every file that differs (tests, CI)

**Result blocks.** In README.md and docs/*.md, everything between a start marker and `<!-- /results -->` is
replaced by the tables of one JSON (bench/record.py describes the file), its notes and a one-line caption with the
machine, date, command and code version:

    <!-- results:NAME -->                                    every table of bench/results/NAME.json
    <!-- results:NAME#TABLE -->                              one table, by its "name"
    <!-- results:NAME#TABLE columns=a|b|c rows=x|y notes=no images=no caption=short -->
                                                             those columns and rows (a row by its first cell), in
                                                             that order; without the notes or images; a caption
                                                             without date and code version (README.md)
    <!-- /results -->

Write a start marker and an end marker on lines of their own and run this script: the lines between them are its.

**docs/configuration.md** is written whole: every key of configs/default.yaml with its dotted path, default and
comment (a comment line indented deeper than the key before it continues that key's comment), grouped by top-level
section; then each preset (configs/*.yaml but default) with its opening comment, the preset it inherits from
(`base:`) and the keys it overrides. Values come from the parsed YAML, comments from the text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CONFIGS = ROOT / "configs"
DOCS = ROOT / "docs"
CONFIG_PAGE = DOCS / "configuration.md"
END = "<!-- /results -->"
START = re.compile(r"^<!-- results:(?P<name>[\w.-]+)(?:#(?P<table>[\w.-]+))?(?P<options>.*?)\s*-->\s*$")
OPTION = re.compile(r"(\w+)=(.+?)(?=\s+\w+=|$)")
OPTIONS = {"columns", "rows", "notes", "images", "caption"}
NULL_CELL = "–"
MINUS = "−"  # U+2212: a minus sign, as the prose uses


class RenderError(Exception):
    """A marker or a result file that cannot be rendered: the message names the file and line."""


# ----- result blocks -------------------------------------------------------------------------------------------------
def load_results(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "tables" not in doc or "format" not in doc:
            continue  # a JSON of another layout (gpu_check's, scale_bench's): figures only, not rendered here
        missing = [k for k in ("name", "title", "machine", "date", "command", "code_version", "source") if k not in doc]
        if missing:
            raise RenderError(f"{path.relative_to(ROOT)}: missing {', '.join(missing)}")
        if doc["name"] != path.stem:
            raise RenderError(f"{path.relative_to(ROOT)}: name {doc['name']!r} is not the file's stem")
        for table in doc["tables"]:
            width = len(table["columns"])
            for row in table["rows"]:
                if len(row) != width:
                    raise RenderError(
                        f"{path.relative_to(ROOT)}: table {table['name']!r}: row {row[:1]} has "
                        f"{len(row)} cells for {width} columns"
                    )
        docs[path.stem] = doc
    return docs


def cell(value: Any, spec: str | None = None) -> str:
    if value is None:
        return NULL_CELL
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        text = format(value, spec) if spec else f"{value:,}"
        return text.replace("-", MINUS) if text.startswith("-") else text
    return str(value).replace("\n", " ").replace("|", r"\|")


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(c.replace("|", r"\|") for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def first_cell(row: list[Any]) -> str:
    return str(row[0]).strip("* ") if row else ""


def select(table: dict[str, Any], columns: list[str] | None, rows: list[str] | None, where: str) -> list[str]:
    names = table["columns"]
    formats = table.get("formats") or [None] * len(names)
    picked = list(range(len(names)))
    if columns:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise RenderError(f"{where}: no column {', '.join(map(repr, unknown))} (columns: {', '.join(names)})")
        picked = [names.index(c) for c in columns]
    body = table["rows"]
    if rows:
        by_name = {first_cell(r): r for r in body}
        unknown = [r for r in rows if r not in by_name]
        if unknown:
            raise RenderError(f"{where}: no row {', '.join(map(repr, unknown))} (rows: {', '.join(by_name)})")
        body = [by_name[r] for r in rows]
    return markdown_table([names[i] for i in picked], [[cell(r[i], formats[i]) for i in picked] for r in body])


def describe_machine(machine: dict[str, Any]) -> str:
    parts = []
    cores, cpu = machine.get("cores"), machine.get("cpu")
    if cores or cpu:
        parts.append(" ".join(x for x in (f"{cores}-core" if cores else None, cpu) if x))
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    for key, label in (("python", "Python"), ("torch", "torch"), ("ray", "Ray")):
        if machine.get(key):
            parts.append(f"{label} {machine[key]}")
    text = ", ".join(parts)
    return f"{text} ({machine['load']})" if machine.get("load") else text


def short_version(version: str | None) -> str:
    if not version:
        return "code version not recorded"
    if version == "unknown":
        return "code version unknown"
    head, _, rest = version.partition("+")
    if not re.fullmatch(r"[0-9a-f]{7,40}", head):
        return f"code: {version}"  # several versions, said in words (a transcribed run)
    return f"code at `{head[:10]}`" + (f" +{rest}" if rest else "")


def short_caption(doc: dict[str, Any]) -> str:
    """The README's caption (``caption=short``): the machine without its load, the command and the file; the date
    and code version stay in the file, as a guide carries neither."""
    machine = describe_machine({k: v for k, v in doc["machine"].items() if k != "load"})
    command = f"`{doc['command']}`" if doc.get("command") else "command not recorded"
    return f"*{machine} · {command} · bench/results/{doc['name']}.json*"


def caption(doc: dict[str, Any]) -> str:
    date = doc.get("date") or "date not recorded"
    command = f"`{doc['command']}`" if doc.get("command") else "command not recorded"
    if doc.get("command_note"):
        command += f" ({doc['command_note']})"
    parts = [describe_machine(doc["machine"]), date, command, short_version(doc.get("code_version")), doc["source"]]
    return "*" + " · ".join(parts) + "*"


def relative(target: str, page: Path) -> str:
    return os.path.relpath(ROOT / target, page.parent).replace(os.sep, "/")


def render_block(doc: dict[str, Any], table_name: str | None, options: dict[str, str], page: Path, where: str) -> str:
    unknown = set(options) - OPTIONS
    if unknown:
        raise RenderError(
            f"{where}: unknown option {', '.join(sorted(unknown))} (options: {', '.join(sorted(OPTIONS))})"
        )
    columns = options["columns"].split("|") if "columns" in options else None
    rows = options["rows"].split("|") if "rows" in options else None
    tables = doc["tables"]
    if table_name is not None:
        tables = [t for t in tables if t["name"] == table_name]
        if not tables:
            names = ", ".join(t["name"] for t in doc["tables"])
            raise RenderError(f"{where}: {doc['name']} has no table {table_name!r} (tables: {names})")
    lines = [
        f"<!-- rendered by bench/render_docs.py from bench/results/{doc['name']}.json: edit that, not this -->",
        "",
    ]
    for table in tables:
        if table.get("title") and len(tables) > 1:
            lines += [f"**{table['title']}**", ""]
        lines += select(table, columns, rows, where) + [""]
        if options.get("notes") != "no":
            lines += [note for n in table.get("notes", []) for note in (n, "")]
    if options.get("notes") != "no":
        lines += [note for n in doc.get("notes", []) for note in (n, "")]
    if options.get("images") != "no":
        for image in doc.get("images", []):
            lines += [f"![{image['alt']}]({relative(image['path'], page)})", ""]
    lines.append(short_caption(doc) if options.get("caption") == "short" else caption(doc))
    return "\n".join(lines)


def render_page(text: str, page: Path, results: dict[str, dict[str, Any]]) -> str:
    """The page with every result block rendered anew."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    where_page = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    while i < len(lines):
        line = lines[i]
        match = START.match(line)
        out.append(line)
        i += 1
        if not match:
            continue
        where = f"{where_page}:{i}"
        end = next((j for j in range(i, len(lines)) if lines[j].strip() == END), None)
        nested = next((j for j in range(i, end or len(lines)) if START.match(lines[j])), None)
        if end is None or nested is not None:
            raise RenderError(f"{where}: {line.strip()} has no {END} before the next block or the end")
        name = match["name"]
        if name not in results:
            raise RenderError(f"{where}: no bench/results/{name}.json (results: {', '.join(results)})")
        options = dict(OPTION.findall(match["options"].strip()))
        out += ["", render_block(results[name], match["table"], options, page, where), ""]
        out.append(lines[end])
        i = end + 1
    return "\n".join(out)


# ----- the configuration reference -----------------------------------------------------------------------------------
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


@dataclass
class KeyText:
    value: str | None  # the value as written on the key's line (None: a section or a block value)
    comment: list[str]


def split_comment(rest: str) -> tuple[str, str | None]:
    """`value  # comment` -> (value, comment): a # that starts the line's rest or follows a space, outside quotes."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[:i].strip(), rest[i + 1 :].strip()
    return rest.strip(), None


def comments_of(text: str) -> tuple[list[str], dict[str, KeyText]]:
    """The file's opening comment lines, and per dotted key its value text and comment lines."""
    header: list[str] = []
    keys: dict[str, KeyText] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing the current line
    last: tuple[int, str] | None = None  # (indent, dotted path) of the last key line
    pending: list[str] = []  # comment lines above a key, at or left of the previous key's indentation
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped:
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            if last is None:
                header.append(comment)
            elif indent > last[0]:
                keys[last[1]].comment.append(comment)
            else:
                pending.append(comment)
            continue
        match = KEY.match(raw)
        if not match:
            continue  # a block list item or a flow value's continuation: values come from the parsed YAML
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        value, comment = split_comment(match["rest"])
        keys[path] = KeyText(value or None, [*pending, *([comment] if comment else [])])
        pending = []
        stack.append((indent, match["key"]))
        last = (indent, path)
    return header, keys


def yaml_value(value: Any) -> str:
    if isinstance(value, str) and value and value == value.strip() and yaml.safe_load(value) == value:
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def escape(text: str) -> str:
    return text.replace("|", r"\|").replace("<", "&lt;").replace("*", r"\*")


def code(text: str) -> str:
    return "`" + text + "`"  # MkDocs' tables do not split cells inside code spans; an escape would show


def comment_text(lines: list[str]) -> str:
    return escape(" ".join(line for line in lines if line))


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", ")")) else ".")


def config_rows(data: dict[str, Any], keys: dict[str, KeyText], prefix: str = "") -> list[list[str]]:
    """One row per key under ``data`` (sections too, before their keys): dotted path, value, comment."""
    rows = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        text = keys.get(path, KeyText(None, []))
        if isinstance(value, dict) and value and text.value is None:
            rows.append([f"**{code(path)}**", "", comment_text(text.comment)])
            rows += config_rows(value, keys, f"{path}.")
        else:
            shown = text.value if text.value is not None else yaml_value(value)
            rows.append([code(path), code(shown), comment_text(text.comment)])
    return rows


def preset_rows(data: dict[str, Any], keys: dict[str, KeyText], prefix: str = "", inherited: str = "") -> list:
    """One row per overridden leaf; a flow mapping's children carry the comment of the line that holds them."""
    rows = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        text = keys.get(path, KeyText(None, []))
        comment = comment_text(text.comment) or inherited
        if isinstance(value, dict) and value:
            flow = text.value is not None  # `stage1: {epochs: 4}`
            rows += preset_rows(value, keys, f"{path}.", comment if flow else "")
        else:
            rows.append([code(path), code(yaml_value(value)), comment])
    return rows


def config_reference(folder: Path = CONFIGS) -> str:
    default_text = (folder / "default.yaml").read_text()
    _, keys = comments_of(default_text)  # its opening comment says what the paragraph above says
    data = yaml.safe_load(default_text) or {}
    out = [
        "<!-- written by bench/render_docs.py from configs/*.yaml: edit the YAML and its comments, then re-render -->",
        "",
        "# Configuration reference",
        "",
        "Every key fsnet reads is in `configs/default.yaml`, with a comment on why it has its value; this page is",
        "generated from that file and the presets beside it, so it shows what the files say. A command resolves its",
        "configuration in this order, later winning: `configs/default.yaml`, then each `--config` preset (a name",
        "under `configs/` or a YAML file, repeatable) in the order given, then the command's own options (`--source`,",
        "`--n`, ...), then each `--set key.path=value` (the value parsed as YAML, repeatable). Unknown keys and wrong",
        "types are errors naming the key and the file or option that set it. `fsnet config show --config NAME --set",
        "...` prints the resolved tree with credentials redacted; every job writes it as `config.yaml` beside its",
        "output, without credentials.",
        "",
    ]
    out += ["Sections: " + ", ".join(f"[`{k}`](#{k})" for k in data), ""]
    for section, value in data.items():
        text = keys.get(section, KeyText(None, []))
        out += [f"## {section}", ""]
        if text.comment:
            out += [sentence(comment_text(text.comment)), ""]
        rows = (
            config_rows(value, keys, f"{section}.")
            if isinstance(value, dict)
            else [[code(section), code(text.value or yaml_value(value)), ""]]
        )
        out += markdown_table(["key", "default", "what and why"], rows) + [""]
    out += [
        "## Presets",
        "",
        "A preset holds only the keys it changes. Name several to combine them (`--config fashion_product_small",
        "--config cpu_mobilenet96`); a preset with a `base:` key starts from the preset it names.",
        "",
    ]
    for path in sorted(folder.glob("*.yaml")):
        if path.name == "default.yaml":
            continue
        preset_text = path.read_text()
        preset_header, preset_keys = comments_of(preset_text)
        preset = yaml.safe_load(preset_text) or {}
        out += [
            f"### {path.stem}",
            "",
            f"`configs/{path.name}`" + (": " + escape(" ".join(preset_header)) if preset_header else ""),
            "",
        ]
        base = preset.pop("base", None)
        if base is not None:
            names = base if isinstance(base, list) else [base]
            out += ["Inherits from " + ", ".join(code(str(n)) for n in names) + ": the keys below override it.", ""]
        rows = preset_rows(preset, preset_keys)
        out += (markdown_table(["key", "value", "comment"], rows) if rows else ["(no keys)"]) + [""]
    return "\n".join(out).rstrip("\n") + "\n"


# ----- the run -------------------------------------------------------------------------------------------------------
def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in DOCS.glob("*.md") if p != CONFIG_PAGE)]


def rendered() -> dict[Path, str]:
    """Every generated file's content as this script renders it now."""
    results = load_results()
    out = {page: render_page(page.read_text(), page, results) for page in pages() if page.exists()}
    out[CONFIG_PAGE] = config_reference()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every file that differs")
    args = parser.parse_args(argv)
    try:
        files = rendered()
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    differ = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    for path in differ:
        name = path.relative_to(ROOT)
        if args.check:
            print(f"{name}: differs from what bench/render_docs.py renders (run it to update)")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
            print(f"{name}: written")
    if args.check and differ:
        return 1
    if not differ:
        print("every rendered block and docs/configuration.md are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
