"""Layer 6, front ends: the IPython magics (the command line is ``__main__``)."""
