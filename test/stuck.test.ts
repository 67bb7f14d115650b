/** notRunReason: when the sweep gives up on a job whose workers could not acquire it. Table-driven. */
import * as assert from "assert";
import type { V1Pod } from "@kubernetes/client-node";
import { AGENT_EXIT_NOT_RUN } from "../scheduler/agentLauncher";
import { notRunReason } from "../scheduler/stuck";

/** A worker pod builder: phase, and the agent container's exit code when it terminated. */
function pod(name: string, phase: string, agentExit?: number, deleting = false): V1Pod {
    return {
        metadata: { name, ...(deleting ? { deletionTimestamp: new Date() } : {}) },
        status: {
            phase,
            containerStatuses: agentExit === undefined ? [] : [{ name: "agent", image: "a", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: agentExit } } }],
        },
    };
}

describe("notRunReason", () => {
    const table: [string, V1Pod[], number, RegExp | undefined][] = [
        ["one worker that ran nothing, backoffLimit 0", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN)], 0, /exited 1 time\(s\) without running the job .* pod w-1/],
        ["two that ran nothing, backoffLimit 1", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Failed", AGENT_EXIT_NOT_RUN)], 1, /exited 2 time\(s\) .* pod w-2/],
        ["one that ran nothing, a retry still to come", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN)], 1, undefined],
        ["the retry is running", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Running")], 0, undefined],
        ["the retry is pending", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN), pod("w-2", "Pending")], 0, undefined],
        ["rejected (27): the Job failed on its own, nothing to give up", [pod("w-1", "Failed", 27)], 0, undefined],
        ["the job ran and failed", [pod("w-1", "Failed", 1)], 0, undefined],
        ["the job ran", [pod("w-1", "Succeeded", 0)], 0, undefined],
        ["being deleted already", [pod("w-1", "Failed", AGENT_EXIT_NOT_RUN, true)], 0, undefined],
        ["no pods", [], 0, undefined],
    ];
    for (const [name, pods, backoffLimit, want] of table) {
        it(name, () => {
            const got = notRunReason(pods, backoffLimit);
            if (want === undefined) assert.strictEqual(got, undefined);
            else assert.match(got ?? "", want);
        });
    }
});
