import * as aws from "@pulumi/aws";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";

/** The existing EKS cluster, as read at deploy time. */
export interface ExistingCluster {
    name: string;
    region: pulumi.Output<string>;
    endpoint: pulumi.Output<string>;
    /** Base64 PEM of the cluster CA. */
    caData: pulumi.Output<string>;
    /** The cluster's authentication mode: access entries need API or API_AND_CONFIG_MAP. */
    authenticationMode: pulumi.Output<string>;
    /** The cluster's OIDC issuer URL (IRSA roles trust it); empty when it has none. */
    oidcIssuer: pulumi.Output<string>;
}

/**
 * Reads the existing cluster's endpoint and CA once, at deploy time; the Lambda gets them as values,
 * so nothing describes the cluster per event.
 */
export function readCluster(name: string, opts?: pulumi.InvokeOptions): ExistingCluster {
    const c = aws.eks.getClusterOutput({ name }, opts);
    const region = aws.getRegionOutput({}, opts).region;
    return {
        name,
        region,
        endpoint: c.endpoint,
        caData: c.certificateAuthorities.apply((cas) => cas[0]?.data ?? ""),
        authenticationMode: c.accessConfigs.apply((a) => a[0]?.authenticationMode ?? "CONFIG_MAP"),
        oidcIssuer: c.identities.apply((ids) => ids?.[0]?.oidcs?.[0]?.issuer ?? ""),
    };
}

/** A kubeconfig for the cluster that authenticates with `aws eks get-token` (the caller's AWS identity). */
export function kubeconfigFor(cluster: ExistingCluster): pulumi.Output<string> {
    return pulumi.all([cluster.endpoint, cluster.caData, cluster.region]).apply(([endpoint, caData, region]) =>
        JSON.stringify({
            apiVersion: "v1",
            kind: "Config",
            clusters: [{ name: cluster.name, cluster: { server: endpoint, "certificate-authority-data": caData } }],
            users: [
                {
                    name: "pulumi",
                    user: {
                        exec: {
                            apiVersion: "client.authentication.k8s.io/v1beta1",
                            command: "aws",
                            args: [
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster.name,
                                "--region",
                                region,
                                "--output",
                                "json",
                            ],
                            interactiveMode: "Never",
                        },
                    },
                },
            ],
            contexts: [{ name: cluster.name, context: { cluster: cluster.name, user: "pulumi" } }],
            "current-context": cluster.name,
        }),
    );
}

/** The Kubernetes provider every in-cluster resource of the stack uses. */
export function createClusterProvider(
    name: string,
    cluster: ExistingCluster,
    opts?: pulumi.CustomResourceOptions,
): k8s.Provider {
    return new k8s.Provider(name, { kubeconfig: kubeconfigFor(cluster), enableServerSideApply: true }, opts);
}
