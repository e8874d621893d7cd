"""``convert``: NER (CoNLL columns, IOB), SQuAD and classification (TSV, JSONL) data to `.spacy`."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import typer

from ._app import app
from ._io import read_text_file

FORMATS = ("conll", "iob", "squad", "tsv", "jsonl")
_DOC_DELIMITER = "-DOCSTART- -X- O O"  # what spaCy's CoNLL NER converter splits documents at
_TAG = re.compile(r"^(O|[BILUES]-\S+)$")
_IOB_TAG = re.compile(r"^(O|[BI]-\S+)$")  # what spaCy's `word|tag` converter reads
_LABEL_SEP = re.compile(r"[,|]")


class ConvertError(ValueError):
    """Input that cannot be converted; the message names the file and line."""


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(..., help="The file to convert.", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="The .spacy file to write (or a directory for <input>.spacy)."),
    fmt: str = typer.Option(..., "--format", "-f", help=f"Input format: {', '.join(FORMATS)}."),
    lang: str = typer.Option("en", "--lang", "-l", help="Language of the tokenizer (squad, tsv, jsonl)."),
    n_sents: int = typer.Option(10, "--n-sents", "-n", help="conll/iob: sentences per Doc (0: one Doc per document)."),
    multilabel: bool = typer.Option(False, "--multilabel", help="tsv/jsonl: several labels per text (TSV: split at ',' or '|')."),
    text_field: str = typer.Option("text", "--text-field", help="tsv/jsonl: the text column or key ('sentence' also accepted)."),
    label_field: str = typer.Option("label", "--label-field", help="tsv/jsonl: the label column or key."),
    dev_fraction: float = typer.Option(0.0, "--dev-fraction", help="Share of the docs to write to --dev-output."),
    dev_output: Optional[Path] = typer.Option(None, "--dev-output", help="The .spacy file for the dev split."),
    seed: int = typer.Option(0, "--seed", help="Seed of the dev split's shuffle."),
) -> None:
    """Convert NER, SQuAD or text classification data to spaCy's binary `.spacy` format (DocBin).

    conll: `token<TAB>tag` lines, BIO, IOB1 or BILUO tags; blank or whitespace-only lines end sentences, `-DOCSTART-` lines end documents.
    iob: the same, or spaCy's one sentence per line `word|tag` format.
    squad: SQuAD v1.1/v2.0 JSON, for albert_qa.
    tsv/jsonl: one text and its label(s) per line, written as `doc.cats` holding every label of the file.
    """
    fmt = fmt.lower()
    try:
        if fmt not in FORMATS:
            raise ConvertError(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}.")
        if multilabel and fmt not in ("tsv", "jsonl"):
            raise ConvertError("--multilabel applies to the tsv and jsonl formats only.")
        if not 0.0 <= dev_fraction < 1.0:
            raise ConvertError(f"--dev-fraction must be in [0, 1), not {dev_fraction}.")
        if (dev_fraction > 0) != (dev_output is not None):
            raise ConvertError("--dev-fraction > 0 and --dev-output go together.")
        if n_sents < 0:
            raise ConvertError(f"--n-sents must be >= 0, not {n_sents}.")
        if fmt in ("conll", "iob"):
            docs = ner_docs(read_text_file(input_path), n_sents, allow_pipe_format=fmt == "iob", source=input_path)
        elif fmt == "squad":
            docs = squad_docs(input_path, lang)
        else:
            rows, skipped = (read_tsv if fmt == "tsv" else read_jsonl)(input_path, text_field, label_field, multilabel)
            if skipped:
                typer.echo(f"convert: skipped {skipped} row(s) with an empty text.", err=True)
            docs = cats_docs(rows, lang, multilabel)
        if not docs:
            raise ConvertError(f"{input_path}: no examples found; is it {fmt} data (--format)?")
        train_docs, dev_docs = split_docs(docs, dev_fraction, seed)
    except (ValueError, OSError, csv.Error) as err:
        typer.echo(f"convert: {err}", err=True)
        raise typer.Exit(1)
    if output_path.is_dir():
        output_path = output_path / f"{input_path.stem}.spacy"
    for path, part in ((output_path, train_docs), (dev_output, dev_docs)):
        if path is not None:
            try:
                write_docs(part, path)
            except OSError as err:
                typer.echo(f"convert: cannot write {path}: {err}", err=True)
                raise typer.Exit(1)
            typer.echo(f"Wrote {len(part)} docs ({_describe(part, fmt)}) to {path}")
    if fmt != "squad":
        typer.echo(_labels_line(docs, fmt))


# ---- NER --------------------------------------------------------------------------------------
def _is_pipe_iob(lines: Sequence[str]) -> bool:
    """Whether the text is spaCy's `iob` format: one sentence per line of `word|tag` fields."""
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("-DOCSTART-")), "")
    fields = first.split()
    return "\t" not in first and bool(fields) and all("|" in f and _TAG.match(f.rsplit("|", 1)[1]) for f in fields)


def normalise_conll(text: str, source: Any = "input") -> List[str]:
    """The documents of a CoNLL NER text, each with sentences separated by one empty line.

    Whitespace-only lines (WNUT-17 writes a lone TAB) end sentences; any `-DOCSTART-` line
    ends a document; E-/S- tags (BIOES) become spaCy's L-/U-; a line that is not
    `token ... tag` raises a `ConvertError` naming it."""
    documents: List[List[str]] = [[]]
    sentence: List[str] = []

    def end_sentence() -> None:
        if sentence:
            documents[-1].append("\n".join(sentence))
            sentence.clear()

    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            end_sentence()
        elif fields[0] == "-DOCSTART-":
            end_sentence()
            documents.append([])
        else:
            if len(fields) < 2:
                raise ConvertError(f"{source}, line {number}: expected 'token<TAB>tag', got {line!r}.")
            tag = fields[-1]
            if not _TAG.match(tag):
                raise ConvertError(f"{source}, line {number}: {tag!r} is not an IOB/BILUO tag (O, B-X, I-X, ...).")
            if tag[0] in "ES":
                tag = ("L" if tag[0] == "E" else "U") + tag[1:]
            sentence.append("\t".join(fields[:-1] + [tag]))
    end_sentence()
    return ["\n\n".join(sentences) for sentences in documents if sentences]


def pipe_iob_sentences(lines: Sequence[str], source: Any = "input") -> List[str]:
    """The sentences of spaCy's `iob` format (`word|tag` or `word|pos|tag` fields, IOB tags),
    checked: a field of another shape or a tag that is not IOB raises a `ConvertError` naming it."""
    sentences = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("-DOCSTART-"):
            continue
        fields = [field.split("|") for field in line.split()]
        for parts in fields:
            if len(parts) != len(fields[0]) or len(parts) not in (2, 3) or not _IOB_TAG.match(parts[-1]):
                raise ConvertError(
                    f"{source}, line {number}: {'|'.join(parts)!r} is not 'word|tag' (or 'word|pos|tag', as the "
                    "line's first field) with an IOB tag (O, B-X, I-X); use -f conll for token<TAB>tag columns."
                )
        sentences.append(line)
    return sentences


def ner_docs(text: str, n_sents: int, *, allow_pipe_format: bool = False, source: Any = "input") -> list:
    """Docs with `doc.ents` from CoNLL columns (or, with `allow_pipe_format`, spaCy's `word|tag`
    lines) through spaCy's own converters; `n_sents` sentences per Doc, never across documents."""
    from spacy.training.converters import conll_ner_to_docs, iob_to_docs

    lines = text.splitlines()
    if allow_pipe_format and _is_pipe_iob(lines):
        sentences = pipe_iob_sentences(lines, source)
        return list(iob_to_docs("\n".join(sentences), n_sents=n_sents, no_print=True))
    docs = []
    for document in normalise_conll(text, source):
        docs.extend(conll_ner_to_docs(document, n_sents=n_sents, no_print=True))
    return docs


# ---- SQuAD ------------------------------------------------------------------------------------
def squad_docs(path: Path, lang: str) -> list:
    """One Doc per paragraph with its questions and answers (see `spacy_albert.pipeline.squad`)."""
    import spacy

    from ..pipeline.squad import squad_to_docs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs = squad_to_docs(path, spacy.blank(lang))  # SquadError names the file, question and field
    dropped = [w for w in caught if "left out" in str(w.message)]
    if dropped:
        typer.echo(f"convert: left out {len(dropped)} answer(s) not found in their context, e.g. {dropped[0].message}", err=True)
    return docs


# ---- classification ---------------------------------------------------------------------------
Row = Tuple[str, Dict[str, float]]  # a text and its {label: 0.0/1.0}


def _split_labels(value: str, multilabel: bool) -> List[str]:
    if not multilabel:
        return [value.strip()] if value.strip() else []
    return [label.strip() for label in _LABEL_SEP.split(value) if label.strip()]


def _tsv_table(path: Path) -> List[List[str]]:
    """The cells of every line of a UTF-8 TSV file (no quoting: quotes are text)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long texts
    reader = csv.reader(io.StringIO(read_text_file(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        return list(reader)
    except csv.Error as err:
        raise ConvertError(f"{path}, line {reader.line_num + 1}: {err}.") from None


def read_tsv(path: Path, text_field: str, label_field: str, multilabel: bool) -> Tuple[List[Row], int]:
    """Rows of a TSV file with a header naming the text and label columns, or of headerless
    `text<TAB>label` lines; returns them and the number of empty-text rows skipped. A row with
    more (non-empty) cells than the header, or than two without one, raises a `ConvertError`."""
    table = _tsv_table(path)
    text_col, label_col, start, width = 0, 1, 0, 2
    header = [cell.strip() for cell in table[0]] if table else []
    text_names = [text_field] + (["sentence"] if text_field == "text" else [])
    if label_field in header and any(name in header for name in text_names):
        text_col = header.index(next(name for name in text_names if name in header))
        label_col, start, width = header.index(label_field), 1, len(header)
    rows: List[Row] = []
    skipped = 0
    for number, cells in enumerate(table[start:], start + 1):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        if any(cell.strip() for cell in cells[width:]):
            layout = f"the header has {width}" if start else (
                f"lines are text<TAB>label (no header row names {text_field!r} and {label_field!r})"
            )
            raise ConvertError(
                f"{path}, line {number}: {len(cells)} cells, but {layout}; a TAB in the text? Replace it with a space."
            )
        text = cells[text_col].strip() if text_col < len(cells) else ""
        if not text:
            skipped += 1
            continue
        labels = _split_labels(cells[label_col], multilabel) if label_col < len(cells) else []
        if not labels:
            raise ConvertError(f"{path}, line {number}: no label.")
        rows.append((text, _exclusive(labels, multilabel, path, number)))
    return rows, skipped


def _exclusive(labels: List[str], multilabel: bool, path: Path, number: int) -> Dict[str, float]:
    if not multilabel and len(set(labels)) != 1:
        raise ConvertError(f"{path}, line {number}: {len(set(labels))} labels {labels}, but the classes are exclusive (use --multilabel).")
    return {label: 1.0 for label in labels}


def _json_label(value: Any, key: str, where: str) -> str:
    """One label of a JSONL record: a string or an integer (as text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConvertError(f"{where}: {key!r} holds {json.dumps(value)[:40]}; labels must be strings or integers.")
    return str(value).strip()


def _json_cats(cats: Any, where: str) -> Dict[str, float]:
    """{label: 0.0/1.0} of a record's "cats" object of label: score (>= 0.5 is positive)."""
    if not isinstance(cats, dict):
        raise ConvertError(f"{where}: 'cats' must be an object of label: score.")
    for label, score in cats.items():
        if not isinstance(score, (int, float)):
            shown = json.dumps(score)[:40]
            raise ConvertError(f"{where}: 'cats' score of {label!r} is {shown}; scores must be numbers (0 to 1).")
    return {label: 1.0 if float(score) >= 0.5 else 0.0 for label, score in cats.items()}


def _json_labels(record: Dict[str, Any], label_field: str, multilabel: bool, where: str) -> Dict[str, float]:
    """{label: 0.0/1.0} of a JSONL record from its `label_field`, "labels" or "cats"."""
    if "cats" in record and label_field not in record:
        return _json_cats(record["cats"], where)
    key = label_field if label_field in record else "labels" if "labels" in record else None
    value = record.get(key) if key is not None else None
    if value is None or value == "":
        raise ConvertError(f"{where}: no label (expected {label_field!r}, 'labels' or 'cats').")
    if isinstance(value, list):
        labels = [_json_label(label, key, where) for label in value]
        return {label: 1.0 for label in labels if label}
    if isinstance(value, dict):
        raise ConvertError(f"{where}: {key!r} must be a label or a list of labels (use 'cats' for scores).")
    return {label: 1.0 for label in _split_labels(_json_label(value, key, where), multilabel)}


def _json_text(record: Dict[str, Any], text_field: str, where: str) -> str:
    """A JSONL record's text ("" for an empty or null one): its `text_field`, or "sentence"
    where the field is the default "text"."""
    key = text_field if text_field in record or text_field != "text" else "sentence"
    if key not in record:
        names = f"{text_field!r}" + (" or 'sentence'" if text_field == "text" else "")
        raise ConvertError(f"{where}: no {names} field; name the text field with --text-field.")
    text = record[key]
    if text is not None and not isinstance(text, str):
        raise ConvertError(f"{where}: {key!r} must be a string, not {json.dumps(text)[:40]}.")
    return (text or "").strip()


def read_jsonl(path: Path, text_field: str, label_field: str, multilabel: bool) -> Tuple[List[Row], int]:
    """Rows of a JSONL file of `{"text": ..., "label": ...}`, `{"text": ..., "labels": [...]}`
    or `{"text": ..., "cats": {...}}` records; returns them and the empty-text rows skipped."""
    rows: List[Row] = []
    skipped = 0
    for number, line in enumerate(io.StringIO(read_text_file(path), newline=None), 1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConvertError(f"{where}: not JSON ({err.msg}).") from None
        if not isinstance(record, dict):
            raise ConvertError(f"{where}: expected a JSON object.")
        text = _json_text(record, text_field, where)
        if not text:
            skipped += 1
            continue
        cats = _json_labels(record, label_field, multilabel, where)
        positive = [label for label, value in cats.items() if value]
        if not multilabel and len(positive) != 1:
            raise ConvertError(f"{where}: {len(positive)} labels {positive}, but the classes are exclusive (use --multilabel).")
        rows.append((text, cats))
    return rows, skipped


def cats_docs(rows: List[Row], lang: str, multilabel: bool) -> list:
    """Docs with `doc.cats` holding every label of `rows` (1.0 for the row's, else 0.0)."""
    import spacy

    labels = sorted({label for _, cats in rows for label in cats})
    if not multilabel and 0 < len(labels) < 2:
        typer.echo(f"convert: only one label ({labels[0]!r}) in the file; exclusive classes need two.", err=True)
    nlp = spacy.blank(lang)
    docs = []
    for doc, (_, cats) in zip(nlp.tokenizer.pipe(text for text, _ in rows), rows):
        doc.cats = {label: cats.get(label, 0.0) for label in labels}
        docs.append(doc)
    return docs


# ---- output -----------------------------------------------------------------------------------
def split_docs(docs: list, dev_fraction: float, seed: int) -> Tuple[list, list]:
    """(train, dev): a seeded random `dev_fraction` of the docs as dev, both in input order."""
    if dev_fraction <= 0:
        return docs, []
    n_dev = max(1, round(dev_fraction * len(docs)))
    if n_dev >= len(docs):
        raise ConvertError(f"--dev-fraction {dev_fraction} of {len(docs)} docs leaves no training docs.")
    dev = set(random.Random(seed).sample(range(len(docs)), n_dev))
    return [d for i, d in enumerate(docs) if i not in dev], [d for i, d in enumerate(docs) if i in dev]


def write_docs(docs: list, path: Path) -> None:
    from spacy.tokens import DocBin

    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)


def _describe(docs: list, fmt: str) -> str:
    if fmt in ("conll", "iob"):
        return f"{sum(1 for doc in docs for _ in doc.sents)} sentences, {sum(len(doc.ents) for doc in docs)} entities"
    if fmt == "squad":
        entries = [entry for doc in docs for entry in doc._.qa_answers]
        questions = {(entry["id"], entry["question"]) for entry in entries}
        impossible = sum(1 for entry in entries if entry.get("is_impossible"))
        return f"{len(questions)} questions, {impossible} without an answer"
    return f"{len(docs)} examples"


def _labels_line(docs: list, fmt: str) -> str:
    if fmt in ("conll", "iob"):
        labels = sorted({ent.label_ for doc in docs for ent in doc.ents})
    else:
        labels = list(docs[0].cats)
    return f"Labels ({len(labels)}): {', '.join(labels)}"
