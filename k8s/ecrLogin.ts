/**
 * The workers' ECR login hook as files of a ConfigMap: plain data, shared by the Pulumi program and
 * the local demo. The script itself is ecr-login.sh beside this file.
 */
import * as fs from "fs";
import * as path from "path";
import { type EcrRegistry } from "../scheduler/config/types";
import { SCALEDKITE_HOOKS_PATH } from "../scheduler/core/workerEnv";

/** The login script, as the hook runs it. */
export const ECR_LOGIN_SCRIPT = path.join(__dirname, "ecr-login.sh");

/** The ConfigMap's files: the environment hook, the script it runs, and the registry list. Pure but for reading the script. */
export function ecrHookFiles(registries: EcrRegistry[]): Record<string, string> {
    return {
        environment: [
            "#!/bin/bash",
            "# Scaledkite: log docker in to the ECR registries of scaledkite:ecrRegistries (see ecr-login).",
            `"${SCALEDKITE_HOOKS_PATH}/ecr-login"`,
            "",
        ].join("\n"),
        "ecr-login": fs.readFileSync(ECR_LOGIN_SCRIPT, "utf8"),
        "ecr-registries": registries.map((r) => r.registry).join("\n") + "\n",
    };
}
