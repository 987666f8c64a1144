"""Which task each label kind of a source feeds.

A source yields label kinds (`boxes`, `mask`, ...); a task type takes one kind (its
`source_kind`). A source section binds a kind to a task by name in `targets`
(`{boxes: vehicles, mask: landcover}`; `null` leaves the kind unused); a kind it does not list
feeds the one task whose type takes it, and nothing when no task does. Two or more candidates
without a binding is an error: the recipe must say which.
"""

from __future__ import annotations


class BindingError(ValueError):
    """A source's label kinds cannot be bound to the recipe's tasks as given."""


def bind_targets(source_config, task_types: dict) -> dict[str, str]:
    """{label kind: task name} for one source section. `task_types` maps each task name to its
    task class or object (anything with a `source_kind`)."""
    kinds = source_config.label_kinds()
    explicit = dict(source_config.targets)
    unknown = sorted(set(explicit) - set(kinds))
    if unknown:
        raise BindingError(f"this source yields no {', '.join(unknown)} labels; it yields: {', '.join(kinds) or 'none'}")
    bound = {}
    for kind in kinds:
        takers = [name for name, task in task_types.items() if task.source_kind == kind]
        if kind in explicit:
            name = explicit[kind]
            if name is None:
                continue
            if name not in task_types:
                raise BindingError(f"{kind}: '{name}' is not a task; tasks: {', '.join(task_types)}")
            if name not in takers:
                raise BindingError(f"{kind}: task '{name}' (type {task_types[name].type}) does not take {kind} labels; "
                                   f"tasks that do: {', '.join(takers) or 'none'}")
            bound[kind] = name
        elif len(takers) == 1:
            bound[kind] = takers[0]
        elif len(takers) > 1:
            raise BindingError(f"{kind} labels could feed tasks {', '.join(takers)}: say which with "
                               f"targets: {{{kind}: <task>}} (or {kind}: null to leave them unused)")
    return bound
