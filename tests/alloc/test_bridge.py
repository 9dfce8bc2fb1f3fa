"""The bridge to NumPy's allocator (numa_numpy._alloc.bridge): the name NumPy
reports for our handler, and a handler's capsule as the Python object NumPy
keeps in its ContextVar, read without leaving it installed."""

import contextvars

import numpy as np

import numa_numpy as nn
from numa_numpy._alloc import bridge


def test_numpy_reports_the_handler_name_for_an_array_made_in_a_scope():
    with nn.on_node(0):
        inside = np.ones(1 << 10)
    assert bridge.get_handler_name(inside) == bridge.HANDLER_NAME == "numa_numpy"
    assert bridge.get_handler_name(np.ones(1 << 10)) == "default_allocator"
    assert bridge.get_handler_name() == "default_allocator"


def test_the_capsule_object_is_read_back_and_numpys_handler_left_as_it_was():
    capsule = nn.on_node(0).handler.capsule  # the cffi capsule, not yet a Python object
    got = bridge.capsule_object(capsule)
    assert type(got).__name__ == "PyCapsule"
    assert bridge.get_handler_name() == "default_allocator"  # installed, then restored
    var = bridge.numpy_handler_var
    assert isinstance(var, contextvars.ContextVar) and var.name == "current_allocator"


def test_setting_numpys_context_variable_to_the_capsule_object_allocates_with_it():
    got = bridge.capsule_object(nn.on_node(0).handler.capsule)
    var = bridge.numpy_handler_var

    def allocate() -> str:
        var.set(got)
        return bridge.get_handler_name(np.ones(1 << 10))

    assert contextvars.copy_context().run(allocate) == bridge.HANDLER_NAME
    assert bridge.get_handler_name() == "default_allocator"
