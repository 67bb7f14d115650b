/**
 * A job's Buildkite priority as a Kubernetes PriorityClass: the stack's `priorityClasses` maps the
 * lowest priority each class takes to the class's name, so on a full cluster kube-scheduler places a
 * higher-priority build's pod first, and may preempt lower ones as the class allows. agent-stack-k8s
 * only orders its own queue by it (and writes the annotation; INTERFACES.md). Pure.
 */

/**
 * The class for `priority` (0, Buildkite's default, when the source does not say): the one with the
 * highest threshold at or below it; undefined when none is (the pod keeps the queue's own).
 */
export function priorityClassFor(classes: Record<string, string>, priority = 0): string | undefined {
    let best: { min: number; name: string } | undefined;
    for (const [min, name] of Object.entries(classes)) {
        const m = Number(min);
        if (Number.isInteger(m) && m <= priority && (!best || m > best.min)) best = { min: m, name };
    }
    return best?.name;
}
