import math


def area_of_circle(radius: float) -> float:
    """Return the area of a circle with the given radius."""
    # Type `return ` on the empty line below and wait for the ghost text; Tab accepts it.
    # Collab: Run Feedback Iterations (Ctrl+Alt+Enter) runs the loop at the cursor.
    # Nothing checks what this function does: the panel says "static checks only".



def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit.

    >>> celsius_to_fahrenheit(0)
    32.0
    >>> celsius_to_fahrenheit(100)
    212.0
    """
    # The examples above run on every candidate: "examples passed 2/2" when they hold.



def running_sum(numbers: list[int]) -> list[int]:
    """Return the running totals of `numbers`, one for each number."""
    # test_demo.py tests this function: "tests passed 2/2" when its tests pass.

