/**
 * Poison never loops and never makes a worker: every malformed event gets its clear reason, is not
 * retried (the handler returns), and leaves no Job on the real API server.
 */
import * as assert from "assert";
import { type ClusterState } from "../../k8s/local/cluster";
import { createEventHandler } from "../../scheduler/schedule/lambda";
import { creatorAs, deleteNamespace, deployStack } from "../helpers/deploy";
import { adminConfig, k8sClient, localCluster } from "../helpers/localCluster";
import { MALFORMED_EVENTS } from "../helpers/malformedEvents";

describe("malformed events on a real API server", function () {
    let state: ClusterState;
    before(async function () {
        state = await localCluster(this);
    });
    after(async function () {
        if (state) await deleteNamespace(state, "malformed-workers");
    });

    it(`gives each of ${MALFORMED_EVENTS.length} malformed events its reason, returns, and makes no Job`, async () => {
        assert.ok(MALFORMED_EVENTS.length >= 30);
        const stack = await deployStack(state, "malformed-workers");
        const lines: string[] = [];
        const handle = createEventHandler(stack.settings, creatorAs(state), (l) => lines.push(l));
        for (const [name, event, reason] of MALFORMED_EVENTS) {
            const d = await handle(event);
            assert.strictEqual(d.outcome, "invalid", name);
            assert.match(d.reason, reason, name);
        }
        assert.strictEqual(lines.length, MALFORMED_EVENTS.length, "one log line each");
        for (const l of lines) assert.strictEqual(JSON.parse(l).outcome, "invalid");
        const jobs = await adminConfig(state)
            .makeApiClient(k8sClient().BatchV1Api)
            .listNamespacedJob({ namespace: stack.namespace });
        assert.strictEqual(jobs.items.length, 0);
    });
});
