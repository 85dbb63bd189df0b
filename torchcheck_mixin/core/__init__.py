"""The machinery every check shares: calling the model, the state guard, trees, the shape
language, parameter tables, reductions, the default loss, results, messages and summaries.
Nothing here imports unittest or a check.
"""

__unittest = True
__tracebackhide__ = True
