"""Each stage's estimate (:class:`Estimator`), a finished step's actual numbers from its manifest
(:func:`actual`), and the tables that show them (see :mod:`parrot.pipeline.estimate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.backends.spec import read_spec
from parrot.core.log import format_table
from parrot.core.manifest import read_manifest
from parrot.pipeline.estimate import (
    GENERATING,
    TRAINING,
    CostSettings,
    Profile,
    RoleBill,
    StepBill,
    cache_kind,
    ceil_div,
    engine,
    find_price,
    generation_seconds,
    mean,
    measure,
    params_from_config,
    params_from_name,
    role_context,
    training_seconds,
)
from parrot.pipeline.steps import PipelineConfig, Step, output_of, stage_config
from parrot.pipeline.tokens import Call, Template, Tokens, Training, conversation_calls, dpo_tokens, fitted_prompt

SIMULATED = 256  # sessions simulated per synthesis step (the rest scaled from them)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


class Estimator:
    """The estimate of a pipeline's steps, one at a time, in the pipeline's order (a step's
    estimate reads the estimates of the steps it reads: a filter's sessions are its synthesis's)."""

    def __init__(self, cfg: PipelineConfig, settings: CostSettings, tokenizer=None):
        self.cfg, self.s = cfg, settings
        if tokenizer is None:
            from parrot.core.tokens import load_tokenizer

            tokenizer = load_tokenizer("smollm2")
        self.tok = tokenizer
        self.template = Template.measure(tokenizer)
        self.by_output = {str(Path(output_of(st, cfg)).resolve()): st for st in cfg.graph}
        self.made: dict[str, dict] = {}  # step -> what its output holds: sessions, pairs, answers
        self._profile: Profile | None = None
        self._finished: dict[str, dict | None] = {}  # finished outputs, measured (finished())

    # ------------------------------------------------------------------ shared pieces
    def count(self, text: str) -> int:
        from parrot.core.tokens import token_lengths

        return token_lengths(self.tok, [text])[0]

    @property
    def profile(self) -> Profile:
        """The real data's lengths: the first prepare step's output, or its source through the
        same cleaning when it has not run yet."""
        if self._profile is None:
            self._profile = self._read_profile()
        return self._profile

    def _read_profile(self) -> Profile:
        from parrot.core.dialogue import read_dialogues

        prep = next((st for st in self.cfg.graph if st.stage.name == "prepare"), None)
        if prep is None:
            raise ParrotError("estimate: no prepare step: the real data's lengths are measured on its output")
        pc = stage_config(prep, self.cfg)
        if Path(pc.output).is_file():
            p = measure(read_dialogues(pc.output, on_error="skip"), self.tok, pc.output, self.s.sample)
            p.count = ((read_manifest(pc.output) or {}).get("counts") or {}).get("train")
            return p
        from dataclasses import replace

        from parrot.prepare.cleaning import Cleaner
        from parrot.prepare.sources import SourceStats, resolve_source
        from parrot.prepare.stage import read_conversations

        sample_cfg = replace(pc, limit=self.s.sample * 2, on_error="skip")
        cleaner = Cleaner(sample_cfg)
        cleaned = (cleaner.clean(c) for c in read_conversations(sample_cfg, SourceStats()))
        dialogues = ({"messages": c.messages} for c in cleaned if c is not None)
        p = measure(dialogues, self.tok, f"{', '.join(pc.source)} (the first records, cleaned)", self.s.sample)
        # the whole source's sessions, from its size: a record's JSON is its messages' text and
        # about a sixth more (keys, roles, escapes), measured on ShareGPT
        size = sum(_size(resolve_source(src)) for src in pc.source)
        kept = 1.0 - pc.dev_fraction
        p.count = int(size / max(1.0, p.chars * 1.15) * kept) if p.chars else None
        if pc.limit:
            p.count = min(p.count or pc.limit, pc.limit)
        return p

    def params(self, model: str) -> float:
        """N of a model: a step's output (the model it trained from), a local config, its name."""
        spec = read_spec(model)
        path = str(spec.name) if spec and spec.in_process else str(model)
        if spec and spec.embedded:
            return 1.35e8
        for key in (model, path):
            if key in self.s.params:
                return float(self.s.params[key])
        step = self.by_output.get(str(Path(path).resolve()))
        if step is not None and step.stage.name in TRAINING:
            return self.params(str(getattr(stage_config(step, self.cfg), "model", "smollm2")))
        found = params_from_config(Path(path)) if Path(path).is_dir() else None
        found = found or params_from_name(path)
        if found is None:
            raise ParrotError(
                f"estimate: {model}: how many parameters? Neither its name nor a local config.json "
                f"says; give costs.params: {{{model}: 8.0e9}}"
            )
        return found

    def answer_mean(self, cap: int | None) -> float:
        return self.profile.capped_mean(self.profile.answers, cap)

    def question_mean(self, cap: int | None) -> float:
        return self.profile.capped_mean(self.profile.followups, cap)

    def context_question_mean(self, cap: int | None) -> float:
        """Context-dependent follow-ups (what CaPO selects); all follow-ups where none was flagged."""
        return self.profile.capped_mean(self.profile.context_followups or self.profile.followups, cap)

    def role_bill(self, step: Step, role: str, spec: str, tokens: Tokens) -> RoleBill:
        return RoleBill(spec, tokens, find_price(self.s.prices, step.name, role, spec))

    def gen_seconds(self, spec: str, tokens: Tokens, parallel: int) -> float:
        params = self.params(spec) if engine(spec) == "gpu" else None
        return generation_seconds(spec, tokens, self.s, parallel=parallel, params=params)

    # ------------------------------------------------------------------ the steps
    def step(self, step: Step) -> StepBill:
        sc = stage_config(step, self.cfg)
        name = step.stage.name
        bill = StepBill(step.name, name)
        if name == "synthesize":
            self.synthesize(step, sc, bill)
        elif name == "filter":
            self.made[step.name] = self.made_by(sc.input)
        elif name == "capo":
            self.capo(step, sc, bill)
        elif name == "eval answer":
            self.answer(step, sc, bill)
        elif name == "eval judge":
            self.judge(step, sc, bill)
        elif name in TRAINING:
            self.train(step, sc, bill)
        if name not in GENERATING and name not in TRAINING:
            bill.seconds = float(self.s.other_seconds.get(name, 1.0))
        return bill

    def made_by(self, path: str) -> dict:
        """What a step's output holds: measured on the output itself when its step has finished
        (:meth:`finished`), else as its estimate left it (real data: the profile)."""
        step = self.by_output.get(str(Path(path).resolve()))
        if step is not None and step.name in self.made:
            made = self.made[step.name]
            return (self.finished(path) if "sessions" in made else None) or made
        return {"sessions": self.profile.sessions, "count": self.profile.count}

    def finished(self, path: str) -> dict | None:
        """The sessions of a finished step's output (complete manifest), measured as the real data
        is: the first ``costs.sample`` of them, and how many it holds. None before it has finished."""
        from parrot.core.dialogue import read_dialogues

        key = str(Path(path).resolve())
        if key not in self._finished:
            try:
                manifest = read_manifest(path) or {}
            except ParrotError:
                manifest = {}
            found = None
            if manifest.get("complete") and Path(path).is_file():
                try:
                    p = measure(read_dialogues(path, on_error="skip"), self.tok, path, self.s.sample)
                except ParrotError:  # nothing answered in it: estimated as if not run
                    self._finished[key] = None
                    return None
                with open(path, "rb") as f:
                    count = sum(1 for line in f if line.strip())
                flagged = p.context_followups
                found = {"sessions": p.sessions, "count": count, "context_question": flagged and mean(flagged)}
            self._finished[key] = found
        return self._finished[key]

    def synthesize(self, step: Step, sc: Any, bill: StepBill) -> None:
        from parrot.synthesize.roleswap import STOP_MARKER, load_ask_system_prompt, opening_turn
        from parrot.synthesize.session import ASKER_DEFAULTS, ASSISTANT_DEFAULTS, load_prompted_prompt

        p, t = self.profile, self.template
        ask_max = sc.asker.sampling(ASKER_DEFAULTS).max_tokens
        ans_max = sc.assistant.sampling(ASSISTANT_DEFAULTS).max_tokens
        q, a = round(self.question_mean(ask_max)), round(self.answer_mean(ans_max))
        stop = self.count(STOP_MARKER) + 1
        prompted = sc.asker_mode == "prompted"
        system = load_prompted_prompt(sc.prompted_prompt) if prompted else load_ask_system_prompt()
        head = [("system", self.count(system)), ("user", self.count(opening_turn(None)))]
        seeds = [n for n, c in zip(p.first, p.first_chars) if not sc.max_seed_chars or c <= sc.max_seed_chars]
        seeds = seeds or p.first
        lengths = [min(max(n, sc.min_turns), sc.max_turns) for n in p.turns] if not prompted else [sc.max_turns]
        redraw = self.s.redraw_rate
        sims = min(sc.num_sessions, SIMULATED)
        asker, assistant, sessions = Tokens(), Tokens(), []
        a_head = [("system", self.count(sc.system_prompt))] if sc.system_prompt else []
        ctx = {r: role_context(getattr(sc, r)) for r in ("asker", "assistant")}
        for i in range(sims):
            seed, turns = seeds[i % len(seeds)], lengths[i % len(lengths)]
            qs = [seed] + [q] * (turns - 1)
            answered = conversation_calls(
                a_head,
                [(x, a) for x in qs],
                t,
                cache=cache_kind(sc.assistant.spec, sc.assistant.base_url),
                context=ctx["assistant"],
                max_tokens=ans_max,
            )
            assistant.add(answered)
            ask_ex = [(c.completion, q) for c in answered[:-1]]
            if turns < sc.max_turns:  # the simulator ended it: one more call, its stop marker
                ask_ex.append((answered[-1].completion, stop))
            asked = conversation_calls(
                [*head, ("assistant", seed)],
                ask_ex,
                t,
                cache=cache_kind(sc.asker.spec, sc.asker.base_url),
                context=ctx["asker"],
                max_tokens=ask_max,
            )
            asker.add(asked)
            # a question drawn again is the same prompt once more, read from the cache
            again = [
                Call(c.prompt, c.completion, c.prompt if cache_kind(sc.asker.spec, None) == "prefix" else 0)
                for c in asked[: turns - 1]
            ]
            asker.add(again, times=redraw)
            sessions.append(
                [*a_head, *[m for x, c in zip(qs, answered) for m in (("user", x), ("assistant", c.completion))]]
            )
        scale = sc.num_sessions / sims
        for tk in (asker, assistant):
            for k in ("calls", "prompt", "cached", "completion"):
                setattr(tk, k, getattr(tk, k) * scale)
        bill.roles = {
            "asker": self.role_bill(step, "asker", sc.asker.spec, asker),
            "assistant": self.role_bill(step, "assistant", sc.assistant.spec, assistant),
        }
        window = sc.in_flight or min(sc.asker.concurrency, sc.assistant.concurrency)
        bill.seconds = self.gen_seconds(sc.asker.spec, asker, window) + self.gen_seconds(
            sc.assistant.spec, assistant, window
        )
        self.made[step.name] = {"sessions": sessions, "count": sc.num_sessions, "question": q, "question_cap": ask_max}
        bill.notes.append(f"{mean(len(s) for s in sessions) / 2:.2f} turns/session, questions {q}, answers {a} tokens")

    def answer(self, step: Step, sc: Any, bill: StepBill) -> None:
        from parrot.backends import SamplingParams
        from parrot.evaluate.bench import load_bench

        bench = load_bench(sc.bench, sc.data_dir, followups=sc.followups, reference_model=sc.reference_model)
        bench = bench.select(sc.limit, sc.question_ids)
        cap = sc.model.sampling(SamplingParams(max_tokens=sc.max_tokens)).max_tokens
        a = round(self.answer_mean(cap))
        head = [("system", self.count(sc.system_prompt))] if sc.system_prompt else []
        tokens = Tokens()
        cache, ctx = cache_kind(sc.model.spec, sc.model.base_url), role_context(sc.model)
        for question in bench.questions:
            turns = [self.count(str(x)) for x in question["turns"]]
            tokens.add(
                conversation_calls(
                    head, [(x, a) for x in turns], self.template, cache=cache, context=ctx, max_tokens=cap
                )
            )
        bill.roles = {"model": self.role_bill(step, "model", sc.model.spec, tokens)}
        bill.seconds = self.gen_seconds(sc.model.spec, tokens, min(len(bench.questions), sc.model.concurrency))
        self.made[step.name] = {"answer": a, "bench": bench}

    def judge(self, step: Step, sc: Any, bill: StepBill) -> None:
        from parrot.backends import SamplingParams
        from parrot.evaluate.bench import load_bench
        from parrot.evaluate.judge import JUDGE_MAX_TOKENS, JUDGE_TEMPERATURE, all_prompts
        from parrot.evaluate.judge_prompts import render_judge_prompt

        bench = load_bench(sc.bench, sc.data_dir, followups=sc.followups, reference_model=sc.reference_model)
        bench = bench.select(sc.limit, sc.question_ids)
        prompts = all_prompts(sc.data_dir)
        cap = sc.judge.sampling(SamplingParams(temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS)).max_tokens
        out = round(self.answer_mean(cap))
        mark = "\x00ANSWER\x00"
        tokens = Tokens()
        ctx = role_context(sc.judge)
        for path in sc.answers:
            made = self.made_by(path)
            a = made.get("answer") or round(self.answer_mean(None))
            for question in bench.questions:
                n = len(question["turns"])
                refs = [bench.reference(question["question_id"], k) for k in range(1, n + 1)]
                for k in range(1, n + 1):
                    if sc.turns and k not in sc.turns:
                        continue
                    _, system, user = render_judge_prompt(prompts, question, [mark] * n, k, refs)
                    shown = user.count(mark)
                    user_tokens = self.count(user.replace(mark, "")) + shown * a
                    msgs = ([("system", self.count(system))] if system else []) + [("user", user_tokens)]
                    prompt, allowed, _ = fitted_prompt(msgs, self.template, context=ctx, max_tokens=cap)
                    tokens.add([Call(prompt, min(out, allowed))])
        bill.roles = {"judge": self.role_bill(step, "judge", sc.judge.spec, tokens)}
        bill.seconds = self.gen_seconds(sc.judge.spec, tokens, sc.judge.concurrency)

    def capo(self, step: Step, sc: Any, bill: StepBill) -> None:
        from parrot.capo.prompts import load_prompt

        candidates, history, late, questions = 0.0, [], [], []
        for path in sc.dialogues:
            made = self.made_by(path)
            sessions = made["sessions"]
            count = made["count"] or len(sessions)
            per = [max(0, sum(r == "user" for r, _ in s) - 1) for s in sessions]
            cap = sc.max_per_session or None
            found = mean(min(n * self.s.context_share, cap or n) for n in per) * count
            if sc.max_turns_total:
                found = min(found, sc.max_turns_total - candidates)
            candidates += found
            # CaPO takes the follow-ups the context detector flags: as long as real users' flagged
            # ones, those of synthesized sessions capped at the simulator's max_tokens
            questions.append(
                (found, made.get("context_question") or self.context_question_mean(made.get("question_cap")))
            )
            history += [sum(n for _, n in s) for s in sessions]
            late.append(mean(max(0, n - 1) / n for n in per if n) if per else 0)
            if sc.max_turns_total and candidates >= sc.max_turns_total:
                break
        turns = min(candidates, sc.max_turns_total or candidates)
        q = round(sum(n * x for n, x in questions) / candidates) if candidates else 0
        ans = round(self.answer_mean(sc.max_tokens))
        guess = min(sc.guess_max_tokens, ans)
        span = min(self.count("x" * 1000) // 4, round(self.question_mean(None)))

        def call(name: str, extra: int, completion: int) -> Call:
            prompt = self.template.prompt([self.count(load_prompt(name, sc.prompt_dir)) + q + extra])
            return Call(prompt, completion)

        per_turn = {
            "ignore": [call("capo_ignore", 0, ans)],
            "hallucinate": [call("capo_hallucinate_guess", 0, guess), call("capo_hallucinate_answer", guess, ans)],
            "misunderstand": [call("capo_misunderstand", span, ans)],
        }
        tokens = Tokens()
        share = mean(late) if late else 1.0
        pairs = 0.0
        for strategy in sc.strategies:
            times = turns * (share if strategy == "misunderstand" else 1.0)
            tokens.add(per_turn[strategy], times=times)
            pairs += times
        bill.roles = {"generator": self.role_bill(step, "generator", sc.generator.spec, tokens)}
        bill.seconds = self.gen_seconds(sc.generator.spec, tokens, sc.generator.concurrency)
        prompt = min(mean(history) if history else 0, (sc.max_length or 10**9) - 2 * ans)
        self.made[step.name] = {"pairs": pairs, "prompt": prompt, "chosen": ans, "rejected": ans}
        bill.notes.append(f"{turns:.0f} turns, {pairs:.0f} pairs")

    def train(self, step: Step, sc: Any, bill: StepBill) -> None:
        trl = sc.trl_args
        n = self.params(str(sc.model))
        procs = self.s.gpus or sc.num_processes or 1
        batch = int(trl.get("per_device_train_batch_size", 8)) * int(trl.get("gradient_accumulation_steps", 1)) * procs
        epochs = float(trl.get("num_train_epochs", 3.0))
        lora, ckpt = bool(sc.lora), bool(trl.get("gradient_checkpointing", False))
        training = Training(params=n, lora=lora, checkpointing=ckpt)
        if step.stage.name == "train-dpo":
            made = self.made_by(sc.data[0])
            pairs = sum(self.made_by(p).get("pairs", 0) for p in sc.data)
            prompt, chosen, rejected = made.get("prompt", 0), made.get("chosen", 0), made.get("rejected", 0)
            examples, per_example = pairs, 2 * prompt + chosen + rejected
        else:
            examples, per_example, sessions = self.examples(step, sc)
            eval_n = min(getattr(sc, "eval_limit", None) or 0, len(self.profile.sessions)) if sc.eval_data else 0
            passes = 2 * (2 if getattr(sc, "eval_base", False) else 1)  # the loss, the per-session pass
            training.forward_tokens = eval_n * min(mean(sum(x for _, x in s) for s in sessions), sc.max_length) * passes
        max_steps = int(trl.get("max_steps", -1) or -1)
        steps = max_steps if max_steps > 0 else ceil_div(examples * epochs, batch)
        seen = min(steps * batch, examples * epochs) if max_steps <= 0 else steps * batch
        if step.stage.name == "train-dpo":
            trained, reference = dpo_tokens(seen, made.get("prompt", 0), chosen, rejected)
            training.tokens, training.forward_tokens = trained, reference
        else:
            training.tokens = seen * per_example
        device = self.s.train_device if self.s.train_device != "auto" else ("gpu" if n >= 1e9 else "cpu")
        bill.training, bill.device = training, device
        bill.seconds, bill.gpu_hours = training_seconds(training, self.s, device, procs)
        bill.notes.append(f"{steps} steps of {batch} examples, {per_example:.0f} tokens each")

    def examples(self, step: Step, sc: Any) -> tuple[float, float, list]:
        """``(examples, tokens per example, sessions)`` of an SFT step's data: each session in its
        training view, split at ``max_length`` as :func:`parrot.train.render.render_examples` splits
        it (one example if it fits; else the first fills ``max_length`` and each later one trains
        the next turns in half of it, with context up to the rest)."""
        from parrot.synthesize.roleswap import STOP_MARKER, load_ask_system_prompt, opening_turn

        sessions, count = [], 0.0
        for path in sc.data:
            made = self.made_by(path)
            got = made["sessions"]
            sessions += got
            count += min(made["count"] or len(got), sc.limit or 10**12)
        if step.stage.name == "train-ask":  # the role swap: the simulator's prompt and opening, a stop
            extra = [self.count(load_ask_system_prompt()), self.count(opening_turn(None)), self.count(STOP_MARKER)]
            sessions = [[("system", extra[0]), ("user", extra[1]), *s, ("assistant", extra[2])] for s in sessions]
        lengths = [self.template.prompt([x for _, x in s], system=bool(s) and s[0][0] == "system") for s in sessions]
        L = sc.max_length
        split = [(1, x) if x <= L else (1 + ceil_div(x - L, L / 2), L + ceil_div(x - L, L / 2) * L) for x in lengths]
        per_session = mean(e for e, _ in split)
        per_example = sum(tok for _, tok in split) / max(1, sum(e for e, _ in split))
        return count * per_session, per_example, sessions


# ---------------------------------------------------------------- actual numbers


def actual(step: Step, cfg: PipelineConfig, seconds: float | None = None) -> StepBill | None:
    """A finished step's numbers from its manifest: each role's usage (tokens), the tokens it
    trained on, and its seconds (the pipeline's row, else the manifest's timings)."""
    from parrot.pipeline.state import marker

    sc = stage_config(step, cfg)
    path = marker(sc)
    if not path.exists():
        return None
    doc = read_manifest(sc.manifest_of()) or {}
    if not doc.get("complete", True):
        return None
    bill = StepBill(step.name, step.stage.name, source="manifest")
    for role, usage in _usages(doc).items():
        tk = Tokens(
            usage.get("requests", 0),
            usage.get("prompt_tokens", 0),
            usage.get("cached_tokens", 0),
            usage.get("completion_tokens", 0),
        )
        spec = getattr(getattr(sc, role, None), "spec", "") or ""
        bill.roles[role] = RoleBill(spec, tk)
    timings = doc.get("timings") or {}
    found = (
        seconds
        if seconds is not None
        else next(
            (timings[k] for k in ("seconds", "total_seconds", "total_s") if isinstance(timings.get(k), (int, float))),
            None,
        )
    )
    if found is None and step.stage.name in TRAINING:
        found = sum(v for k, v in timings.items() if k.endswith("_s") and isinstance(v, (int, float)))
    bill.seconds = float(found or 0.0)
    counts = doc.get("counts") or {}
    if step.stage.name in TRAINING and isinstance(counts.get("tokens"), (int, float)):
        bill.notes.append(f"{counts['tokens']} tokens rendered")
    return bill


def _usages(doc: dict) -> dict[str, dict]:
    """The usage each role of a manifest recorded, by role name."""
    usage = doc.get("usage")
    if isinstance(usage, dict) and "requests" in usage:  # one role: eval answer's model, the judge
        return {"judge" if doc.get("stage") == "eval judge" else "model": usage}
    if isinstance(usage, dict):
        return {k: v for k, v in usage.items() if isinstance(v, dict)}
    if isinstance(doc.get("generator_usage"), dict):
        return {"generator": doc["generator_usage"]}
    return {}


# ---------------------------------------------------------------- tables


def _n(x: float) -> str:
    """Tokens or FLOPs in a short form: 980, 12.3K, 4.56M, 7.8G."""
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.0f}"


def _cost(c: float | None) -> str:
    return "unknown (no price)" if c is None else f"${c:,.2f}"


def _total_cost(total: dict) -> str:
    unknown = total["cost_unknown_roles"]
    if total["cost"] is None or not unknown:
        return _cost(total["cost"])
    return f"{_cost(total['cost'])} + {unknown} role(s) without a price"


def _time(s: float) -> str:
    return f"{s:.0f} s" if s < 600 else f"{s / 3600:.1f} h"


def bill_table(bills: list[StepBill]) -> str:
    """One row per role of each step (a training step: its tokens and FLOPs), then the total."""
    rows = []
    for b in bills:
        for role, r in b.roles.items():
            t = r.tokens
            rows.append(
                (
                    b.step,
                    role,
                    r.spec,
                    _n(t.calls),
                    _n(t.prompt),
                    _n(t.cached),
                    _n(t.completion),
                    "",
                    "",
                    _cost(r.cost),
                    "",
                )
            )
        if b.training:
            tr = b.training
            rows.append(
                (
                    b.step,
                    f"train ({'LoRA' if tr.lora else 'full'})",
                    f"N={_n(tr.params)}",
                    "",
                    "",
                    "",
                    "",
                    _n(tr.tokens + tr.forward_tokens),
                    _n(tr.flops),
                    f"{b.gpu_hours:.2f} GPU h" if b.device == "gpu" else "CPU",
                    "",
                )
            )
        if not b.roles and not b.training:
            rows.append((b.step, "-", "", "", "", "", "", "", "", "", _time(b.seconds)))
        else:
            rows[-1] = (*rows[-1][:-1], _time(b.seconds))
    total = sum_bills(bills)
    rows.append(
        (
            "total",
            "",
            "",
            _n(total["calls"]),
            _n(total["prompt"]),
            _n(total["cached"]),
            _n(total["completion"]),
            _n(total["train_tokens"]),
            _n(total["flops"]),
            f"{_total_cost(total)}; {total['gpu_hours']:.1f} GPU h",
            _time(total["seconds"]),
        )
    )
    head = (
        "step",
        "role",
        "model",
        "calls",
        "prompt",
        "cached",
        "completion",
        "train tokens",
        "FLOPs",
        "cost / GPU",
        "wall",
    )
    return format_table(rows, head, left=(0, 1, 2))


def sum_bills(bills: list[StepBill]) -> dict:
    roles = [r for b in bills for r in b.roles.values()]
    costs = [r.cost for r in roles]
    known = [c for c in costs if c is not None]
    return {
        "calls": sum(r.tokens.calls for r in roles),
        "prompt": sum(r.tokens.prompt for r in roles),
        "cached": sum(r.tokens.cached for r in roles),
        "completion": sum(r.tokens.completion for r in roles),
        "train_tokens": sum(b.training.tokens + b.training.forward_tokens for b in bills if b.training),
        "flops": sum(b.training.flops for b in bills if b.training),
        "gpu_hours": sum(b.gpu_hours for b in bills),
        "cost": None if len(known) < len(costs) and not known else sum(known),
        "cost_unknown_roles": len(costs) - len(known),
        "seconds": sum(b.seconds for b in bills),
    }


def from_dict(doc: dict) -> StepBill:
    """A :class:`StepBill` as :meth:`StepBill.to_dict` wrote it (its totals: what comparing needs)."""
    bill = StepBill(doc["step"], doc["stage"], seconds=float(doc.get("seconds") or 0.0), source=doc.get("source", ""))
    for role, r in (doc.get("roles") or {}).items():
        bill.roles[role] = RoleBill(r.get("spec", ""), Tokens(r["calls"], r["prompt"], r["cached"], r["completion"]))
    return bill


def compare_rows(estimates: list[StepBill], actuals: dict[str, StepBill]) -> list[dict]:
    """Estimate against actual per step: tokens (prompt + completion, every role) and seconds."""
    rows = []
    for e in estimates:
        a = actuals.get(e.step)
        row = {
            "step": e.step,
            "stage": e.stage,
            "tokens_estimate": round(e.tokens),
            "seconds_estimate": round(e.seconds, 1),
        }
        if a is not None:
            row.update(tokens_actual=round(a.tokens), seconds_actual=round(a.seconds, 1))
        rows.append(row)
    return rows


def _ratio(est: float, act: float | None) -> str:
    if act is None:
        return "-"
    if not act:
        return "-" if not est else "n/a"
    return f"{(est - act) / act:+.0%}"


def compare_table(rows: list[dict]) -> str:
    """The rows of :func:`compare_rows` with the totals."""
    out = []
    for r in rows:
        ta, sa = r.get("tokens_actual"), r.get("seconds_actual")
        tokens = r["tokens_estimate"] or ta
        out.append(
            (
                r["step"],
                r["stage"],
                _n(r["tokens_estimate"]) if tokens else "-",
                _n(ta) if tokens and ta is not None else "-",
                _ratio(r["tokens_estimate"], ta) if tokens else "-",
                f"{r['seconds_estimate']:.0f}",
                "-" if sa is None else f"{sa:.0f}",
                _ratio(r["seconds_estimate"], sa),
            )
        )
    done = [r for r in rows if "seconds_actual" in r]
    est_s, act_s = sum(r["seconds_estimate"] for r in done), sum(r["seconds_actual"] for r in done)
    est_t, act_t = sum(r["tokens_estimate"] for r in done), sum(r["tokens_actual"] for r in done)
    out.append(
        (
            "total (steps with both)",
            "",
            _n(est_t),
            _n(act_t),
            _ratio(est_t, act_t),
            f"{est_s:.0f}",
            f"{act_s:.0f}",
            _ratio(est_s, act_s),
        )
    )
    head = ("step", "stage", "tokens est.", "tokens actual", "off by", "seconds est.", "seconds actual", "off by")
    return format_table(out, head, left=(0, 1))
