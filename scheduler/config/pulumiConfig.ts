/**
 * The Pulumi edge of the configuration: reads `scaledkite:*` from the stack and hands the values to the
 * pure validator. Secrets are read as secret Outputs and never leave them; only their presence is
 * passed to validation.
 */
import * as pulumi from "@pulumi/pulumi";
import { parseStackConfig } from "./config";
import { isConfigError } from "../core/errors";
import { CONFIG_KEYS, SECRET_KEYS } from "./declaration";
import { type StackConfig } from "./types";

export interface StackSecrets {
    /** Absent when the token comes from Secrets Manager (scaledkite:agentTokenSecretArn). */
    agentToken?: pulumi.Output<string>;
    env?: pulumi.Output<Record<string, string>>;
    gitCredentials?: pulumi.Output<string>;
    gitSshKey?: pulumi.Output<string>;
}

/** Pulumi's record of which config keys were set with --secret (not in its public typings). */
const runtimeConfig: { isConfigSecret?: (key: string) => boolean } = require("@pulumi/pulumi/runtime/config");

/** Secret keys that must be set with --secret. */
const SECRET_CONFIG_KEYS: readonly string[] = SECRET_KEYS;

/**
 * Reads and validates the stack configuration. Throws a pulumi RunError (one line per problem, no
 * stack trace) when it is invalid.
 */
export function readStackConfig(cfg: pulumi.Config): { config: StackConfig; secrets: StackSecrets } {
    const raw: Record<string, unknown> = {};
    for (const key of CONFIG_KEYS) {
        if (SECRET_CONFIG_KEYS.includes(key)) {
            // Presence only: the value stays inside a secret Output.
            if (cfg.get(key) !== undefined) raw[key] = "<secret>";
        } else {
            const v = cfg.get(key);
            if (v !== undefined) raw[key] = v;
        }
    }
    // Unknown keys under the scaledkite namespace are most likely typos of real ones.
    const fullConfig = pulumi.runtime.allConfig();
    for (const fullKey of Object.keys(fullConfig)) {
        const [ns, key] = fullKey.split(":");
        if (ns === cfg.name && key && !CONFIG_KEYS.includes(key)) raw[key] = fullConfig[fullKey];
    }

    let config: StackConfig;
    try {
        config = parseStackConfig(raw);
    } catch (e) {
        if (isConfigError(e))
            throw new pulumi.RunError(`invalid Scaledkite configuration:\n  ${e.problems.join("\n  ")}`);
        throw e;
    }
    const secretProblems: string[] = [];
    for (const key of SECRET_CONFIG_KEYS) {
        if (
            cfg.get(key) !== undefined &&
            runtimeConfig.isConfigSecret &&
            !runtimeConfig.isConfigSecret(`${cfg.name}:${key}`)
        ) {
            secretProblems.push(
                `scaledkite:${key} is stored in plain text: set it again with pulumi config set --secret scaledkite:${key} ...`,
            );
        }
    }
    if (secretProblems.length)
        throw new pulumi.RunError(`invalid Scaledkite configuration:\n  ${secretProblems.join("\n  ")}`);

    const envText = cfg.getSecret("env");
    return {
        config,
        secrets: {
            agentToken: cfg.getSecret("agentToken"),
            env: envText === undefined ? undefined : envText.apply((t) => parseSecretEnv(t)),
            gitCredentials: cfg.getSecret("gitCredentials"),
            gitSshKey: cfg.getSecret("gitSshKey"),
        },
    };
}

/** Parses the secret env map; the message never includes the values. */
export function parseSecretEnv(text: string): Record<string, string> {
    let v: unknown;
    try {
        v = JSON.parse(text);
    } catch {
        throw new pulumi.RunError(
            `scaledkite:env must be a JSON map of variable names to values, e.g. pulumi config set --secret scaledkite:env '{"GITHUB_TOKEN":"..."}'`,
        );
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
        throw new pulumi.RunError(`scaledkite:env must be a JSON map of variable names to values`);
    }
    const out: Record<string, string> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
        if (!/^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(k))
            throw new pulumi.RunError(`scaledkite:env.${k} is not a valid environment variable name`);
        if (typeof val !== "string") throw new pulumi.RunError(`scaledkite:env.${k} must be a string`);
        out[k] = val;
    }
    return out;
}
