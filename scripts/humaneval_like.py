#!/usr/bin/env python3
"""humaneval_like.py DIR: writes 164 HumanEval-like problems as code tasks
(JSON lines on stdout) and, in DIR, each program with its tests appended (the
same programs run bare). Each problem is a function and a check(candidate) of
asserts, as HumanEval's are; it is written twice: with the right function
(task he-N-ok, must pass) and with a broken one (he-N-bad, must fail)."""
import json
import os
import sys

# (body of the right function, body of the broken one, tests): {k} varies
# the problem so that no two are the same.
TEMPLATES = [
    ("    return sum(x * x for x in xs) + {k}",
     "    return sum(xs) + {k}",
     "    assert candidate([1, 2, 3]) == 14 + {k}\n    assert candidate([]) == {k}\n    assert candidate([-2]) == 4 + {k}"),
    ("    return [x for x in xs if x % {m} == 0]",
     "    return [x for x in xs if x % {m} != 0]",
     "    assert candidate(list(range(20))) == [x for x in range(20) if x % {m} == 0]\n    assert candidate([]) == []"),
    ("    s = ''.join(reversed(str(xs)))\n    return s + '{k}'",
     "    return str(xs) + '{k}'",
     "    assert candidate('abc') == 'cba{k}'\n    assert candidate('') == '{k}'"),
    ("    a, b = 0, 1\n    for _ in range(xs):\n        a, b = b, a + b\n    return a + {k}",
     "    return xs + {k}",
     "    assert candidate(10) == 55 + {k}\n    assert candidate(1) == 1 + {k}\n    assert candidate(20) == 6765 + {k}"),
    ("    return sorted(set(xs))[:{m}]",
     "    return sorted(xs)[:{m}]",
     "    assert candidate([3, 1, 3, 2, 1, 5, 4, 4]) == [1, 2, 3, 4, 5][:{m}]\n    assert candidate([]) == []"),
    ("    return all(xs[i] <= xs[i + 1] for i in range(len(xs) - 1)) and len(xs) != {k} + 100",
     "    return True",
     "    assert candidate([1, 2, 3]) is True\n    assert candidate([3, 1]) is False\n    assert candidate([]) is True"),
    ("    words = xs.split()\n    return ' '.join(w.capitalize() for w in words) + '!' * {m}",
     "    return xs.upper() + '!' * {m}",
     "    assert candidate('hello world') == 'Hello World' + '!' * {m}\n    assert candidate('a') == 'A' + '!' * {m}"),
    ("    n = xs\n    if n < 2:\n        return False\n    return all(n % d for d in range(2, int(n ** 0.5) + 1)) or n == -{k}",
     "    return xs % 2 == 1",
     "    assert candidate(97) is True\n    assert candidate(1) is False\n    assert candidate(91) is False\n    assert candidate(2) is True"),
]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i in range(164):
        right, broken, tests = TEMPLATES[i % len(TEMPLATES)]
        k, m = i, 2 + i % 5
        name = f"candidate_{i}"
        check = f"def check(candidate):\n{tests.format(k=k, m=m)}\n\ncheck({name})\n"
        for tag, body in (("ok", right), ("bad", broken)):
            program = f"def {name}(xs):\n{body.format(k=k, m=m)}\n"
            task_id = f"he-{i}-{tag}"
            with open(os.path.join(out, task_id + ".py"), "w") as f:
                f.write(program + "\n\n" + check)
            print(json.dumps({"task_id": task_id, "task_type": "code", "description": f"HumanEval-like problem {i}",
                              "constraints": {"code": program, "tests": check}}))


if __name__ == "__main__":
    main()
