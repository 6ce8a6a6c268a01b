"""Parrot: better multi-turn instruction following for chat models.

The pipeline, one module (or package) per stage:

    prepare     real user–assistant logs  -> Dialogue JSONL
    train       Parrot-Ask (user simulator), Parrot-Chat (SFT), DPO
    synthesize  simulator x assistant     -> long multi-turn sessions
    filter      drop/cut degenerate questions, near-duplicate sessions
    stats       turns, lengths, context dependence, diversity, human-likeness
    capo        context-aware preference pairs (three negative strategies)
    evaluate    MT-Bench and MT-Bench++ answers, judgments, reports

Models are reached only through :mod:`parrot.backends`.
"""

__version__ = "0.1.0"


class ParrotError(Exception):
    """An error a user can act on: the message names the file, line or record and what was wrong.

    The CLI prints it without a traceback and exits with status 2.
    """
