"""The turn protocol shared by the server and training.

`program` (the multi-agent program, its composition and AST facts), `replies` (reading model
replies: fenced code, one function, the expert's edits), `prompts` (every prompt text),
`feedback` (next-turn feedback in each mode), `rewards` (the MAGRPO and code-agentic rewards
and the one program scorer), `driver` (the turns, step by step or all at once).
"""
