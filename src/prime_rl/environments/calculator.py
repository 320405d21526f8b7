"""`calculator`: arithmetic questions the model may answer with a `calculator` tool (a `ToolEnv`).

Questions are generated from `random.Random(seed)`: two or three integers joined by `+`, `-` or `*`. Reward
`correct`: 1.0 when the last number of the final reply equals the answer. `tool_use` (weight `tool_weight`,
default 0.2, because SmolLM2-135M-Instruct almost never calls a tool unprompted): 1.0 when the rollout made at least
one well-formed call. `tool_calls` and `tool_errors` (weight 0) count calls and error results. The prompt shows the
exact call to write.
"""

from __future__ import annotations

import ast
import operator
import random
import re

from prime_rl.environments.parsing import last_assistant_text
from prime_rl.environments.rubric import Rubric
from prime_rl.environments.tool_env import ToolEnv, tool_calls_made, tool_results
from prime_rl.environments.types import Example

PROMPT = (
    "What is {question}? Call the calculator by writing exactly "
    '<tool_call>{{"name": "calculator", "arguments": {{"expression": "{question}"}}}}</tool_call>'
    " and then reply with only the number."
)
MAX_MAGNITUDE = 10**12
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:  # bounded so a call cannot hang the rollout
            raise ValueError(f"exponent {right} is too large")
        value = _OPERATORS[type(node.op)](left, right)
        if abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"result magnitude above {MAX_MAGNITUDE}")
        return value
    raise ValueError(f"unsupported expression element `{ast.unparse(node)}`")


def calculator(expression: str) -> str:
    """Evaluates an arithmetic expression and returns the result.

    Args:
        expression: numbers, parentheses and the operators + - * / // % **, e.g. "(3 + 4) * 12".
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot parse `{expression}`") from None
    value = _evaluate(tree.body)
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def last_number(text: str) -> float | None:
    """The last number written in `text` (thousands separators ignored), or None."""
    numbers = _NUMBER_RE.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def make_examples(num_examples: int, seed: int, max_operand: int) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(num_examples):
        terms = [str(rng.randint(2, max_operand)) for _ in range(rng.choice((2, 3)))]
        question = terms[0]
        for term in terms[1:]:
            question += f" {rng.choice('+-*')} {term}"
        answer = calculator(question)
        examples.append(Example(i, [{"role": "user", "content": PROMPT.format(question=question)}], answer=answer))
    return examples


def correct(completion: list[dict], answer: str) -> float:
    return float(last_number(last_assistant_text(completion)) == float(answer))


def tool_use(completion: list[dict]) -> float:
    return float(bool(tool_calls_made(completion)))


def tool_calls(completion: list[dict]) -> float:
    return float(len(tool_calls_made(completion)))


def tool_errors(completion: list[dict]) -> float:
    return float(sum(r.startswith("Error:") for r in tool_results(completion)))


def load_environment(
    num_train_examples: int = 1000,
    num_eval_examples: int = 100,
    seed: int = 0,
    max_operand: int = 99,
    max_turns: int = 3,
    tool_weight: float = 0.2,
) -> ToolEnv:
    rubric = Rubric([correct, tool_use, tool_calls, tool_errors], [1.0, tool_weight, 0.0, 0.0])
    train = make_examples(num_train_examples, seed, max_operand)
    evaluation = make_examples(num_eval_examples, seed + 1, max_operand)
    return ToolEnv("calculator", train, rubric, [calculator], evaluation, max_turns=max_turns)
