/**
 * The Lambdas' log, one module for all three: one JSON line per record on stdout, each string field
 * clipped, so every line is a JSON log event that a metric filter or Embedded Metric Format reads.
 * Records carry `msg` (scaledkite.schedule, scaledkite.sweep, scaledkite.token-sync), an `outcome`
 * or a `warning`, and the job, queue or secret they are about: the fields a reader filters on.
 */

export type Logger = (line: string) => void;

/**
 * The Lambdas' logger: each line written to stdout as is. In Lambda's Text log format console.log
 * prefixes a timestamp, request id and level, so the line would no longer be a JSON log event that a
 * metric filter (`{ $.outcome = "invalid" }`) or Embedded Metric Format can read; stdout is not prefixed.
 */
export const logLine: Logger = (line) => {
    process.stdout.write(`${line}\n`);
};

/** The longest text field a log line carries: an event's own text (labels, rules, bad values) is attacker-sized. */
export const MAX_LOGGED_TEXT = 1000;

/** A log record as one JSON line, each string field cut to MAX_LOGGED_TEXT characters (saying how much was cut). Pure. */
export function jsonLine(record: Record<string, unknown>): string {
    const clipped: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(record)) {
        clipped[k] =
            typeof v === "string" && v.length > MAX_LOGGED_TEXT
                ? `${v.slice(0, MAX_LOGGED_TEXT)}… (${v.length - MAX_LOGGED_TEXT} more characters)`
                : v;
    }
    return JSON.stringify(clipped);
}
