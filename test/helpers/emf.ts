/** Reading the Lambdas' log lines as CloudWatch reads Embedded Metric Format. */
import * as assert from "assert";
import { MAX_METRIC_VALUES, METRIC_NAMESPACE } from "../../scheduler/core/metrics";

/**
 * Checks a log line as CloudWatch reads EMF: one JSON object whose `_aws` directive names a
 * namespace, dimension sets whose keys are top-level strings, and metrics whose names are top-level
 * numbers (or lists of at most 100). Returns the metrics by name with their units.
 */
export function parseEmf(line: string): {
    dimensions: Record<string, string>;
    metrics: Record<string, { unit: string; value: number | number[] }>;
} {
    const record = JSON.parse(line);
    const directive = record._aws;
    assert.strictEqual(typeof directive?.Timestamp, "number", "a Timestamp in ms");
    assert.strictEqual(directive.CloudWatchMetrics.length, 1);
    const [{ Namespace, Dimensions, Metrics }] = directive.CloudWatchMetrics;
    assert.strictEqual(Namespace, METRIC_NAMESPACE);
    const dimensions: Record<string, string> = {};
    for (const set of Dimensions) {
        assert.ok(set.length <= 30);
        for (const key of set) {
            assert.strictEqual(typeof record[key], "string", `dimension ${key} is a top-level string`);
            dimensions[key] = record[key];
        }
    }
    const metrics: Record<string, { unit: string; value: number | number[] }> = {};
    for (const { Name, Unit } of Metrics) {
        const v = record[Name];
        assert.ok(
            typeof v === "number" ||
                (Array.isArray(v) && v.length <= MAX_METRIC_VALUES && v.every((x) => typeof x === "number")),
            `metric ${Name} is a number or a list of at most 100`,
        );
        metrics[Name] = { unit: Unit, value: v };
    }
    return { dimensions, metrics };
}
