/**
 * What the events about the workers' pods say (core/stuck.ts judges with it): the kubelet's start
 * attempts per container, and the cluster autoscaler's last word per pod. Pure.
 */
import type { CoreV1Event } from "@kubernetes/client-node";

/** What the kubelet's events say about one container's attempts to start. */
export interface ContainerAttempts {
    pulling: number;
    pulled: number;
    failedPulls: number;
    /** `Error: …` events: failed creations (and pulls, which are counted above). */
    errors: number;
}

/** What the cluster autoscaler last said about a pod (its events; it sets no pod condition). */
export interface ScaleUpNews {
    /** When it last triggered a scale-up for the pod (epoch ms), and its words. */
    triggeredAt?: number;
    triggered?: string;
    /** When it last did not, and its words (e.g. "pod didn't trigger scale-up: 2 max node group size reached"). */
    notTriggeredAt?: number;
    notTriggered?: string;
}

/** What the events say about the workers' pods. */
export interface PodHistory {
    /** The kubelet's start attempts per `<pod>/<container>`. */
    attempts: ReadonlyMap<string, ContainerAttempts>;
    /** The cluster autoscaler's last word per pod. */
    scaleUps: ReadonlyMap<string, ScaleUpNews>;
}

/** A history with nothing in it (nothing needed one). Pure. */
export function emptyHistory(): PodHistory {
    return { attempts: new Map(), scaleUps: new Map() };
}

/** When an event last happened (epoch ms): its last time, else its series', else its first. */
function eventTime(e: CoreV1Event): number {
    const at = e.lastTimestamp ?? e.series?.lastObservedTime ?? e.eventTime ?? e.firstTimestamp;
    return at ? new Date(at).getTime() : 0;
}

/** Records a cluster autoscaler scale-up event about a pod: the latest of each kind counts. */
function noteScaleUp(out: Map<string, ScaleUpNews>, pod: string, e: CoreV1Event) {
    const news = out.get(pod) ?? {};
    out.set(pod, news);
    const at = eventTime(e);
    if (e.reason === "TriggeredScaleUp" && at >= (news.triggeredAt ?? 0))
        Object.assign(news, { triggeredAt: at, triggered: e.message });
    if (e.reason === "NotTriggerScaleUp" && at >= (news.notTriggeredAt ?? 0))
        Object.assign(news, { notTriggeredAt: at, notTriggered: e.message });
}

/**
 * Each container's start attempts from the kubelet's events about pods (the container is in the
 * event's fieldPath, `spec.containers{name}` or `spec.initContainers{name}`; a repeated event counts
 * `count` times), and the cluster autoscaler's last word about each pod. Pure.
 */
export function podHistory(events: CoreV1Event[]): PodHistory {
    const out = new Map<string, ContainerAttempts>();
    const scaleUps = new Map<string, ScaleUpNews>();
    for (const e of events) {
        if (e.involvedObject?.kind !== "Pod" || !e.involvedObject.name) continue;
        if (e.reason === "TriggeredScaleUp" || e.reason === "NotTriggerScaleUp") {
            noteScaleUp(scaleUps, e.involvedObject.name, e);
            continue;
        }
        const container = /\{([^}]+)\}$/.exec(e.involvedObject.fieldPath ?? "")?.[1];
        if (!container) continue;
        const key = `${e.involvedObject.name}/${container}`;
        const a = out.get(key) ?? { pulling: 0, pulled: 0, failedPulls: 0, errors: 0 };
        out.set(key, a);
        const n = Math.max(1, e.series?.count ?? e.count ?? 1);
        const message = e.message ?? "";
        if (e.reason === "Pulling") a.pulling += n;
        else if (e.reason === "Pulled") a.pulled += n;
        else if (e.reason === "Failed" && message.startsWith("Failed to pull image")) a.failedPulls += n;
        else if (
            e.reason === "Failed" &&
            message.startsWith("Error:") &&
            !/^Error: (ErrImagePull|ImagePullBackOff)/.test(message)
        )
            a.errors += n;
    }
    return { attempts: out, scaleUps };
}
