# A deliberately wrong solution to HumanEval/0 (has_close_elements), for `make demo`:
# it only compares neighbours in the given order, so close pairs that are not adjacent
# are missed, and the judge reports the failing call with its expected and actual result.
def has_close_elements(numbers, threshold):
    return any(abs(numbers[i] - numbers[i + 1]) < threshold for i in range(len(numbers) - 1))
