// The configuration files of a real node (containerd, CNI, kubelet), as pure
// functions of its identity and folders. Every setting here prevents an error
// seen on these machines; see the comments.
import type { NodeIdentity } from "./node-identity.ts";

export interface NodePaths {
  /** Everything of this node lives here. */
  state: string;
  containerdSocket: string;
  cniBin: string;
  runc: string;
  caCert: string;
  /** Reference of the pinned sandbox (pause) image, imported beforehand. */
  pauseImage: string;
}

export function containerdConfig(paths: NodePaths): string {
  const s = paths.state;
  return `version = 3
root = "${s}/containerd/root"
state = "${s}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs",
  "io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${paths.containerdSocket}"
[ttrpc]
  address = "${paths.containerdSocket}.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Imported locally: nothing is ever pulled.
    sandbox = "${paths.pauseImage}"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  enable_cdi = false
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails with
  # "can't get final child's PID from pipe: EOF" (oom_score_adj: permission denied).
  restrict_oom_score_adj = true
  # Network namespaces under the state folder, not the machine's /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "${paths.runc}"
        Root = "${s}/containerd/runc"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["${paths.cniBin}"]
    conf_dir = "${s}/cni/net.d"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`;
}

/**
 * A bridge without isGateway/ipMasq never touches ip_forward or iptables. The
 * harness puts the subnet's .1 on the bridge and pods get a default route to
 * it, so they reach servers listening on the host (PostgreSQL, SMTP and HTTP
 * peers) by local delivery; nothing leaves the machine.
 */
export function cniConfig(node: NodeIdentity, state: string): string {
  return JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: node.cniNetwork,
      plugins: [
        {
          type: "bridge",
          bridge: node.bridge,
          isGateway: false,
          ipMasq: false,
          hairpinMode: false,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: node.podCidr, gateway: node.hostAddress }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: `${state}/cni/ipam`,
          },
        },
        { type: "loopback" },
      ],
    },
    null,
    2,
  );
}

export interface KubeletPorts {
  port: number;
  healthz: number;
}

export function kubeletConfig(node: NodeIdentity, paths: NodePaths, ports: KubeletPorts): string {
  const s = paths.state;
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 ("kubelet is configured to not run on a host using cgroup v1").
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${paths.containerdSocket}
imageServiceEndpoint: unix://${paths.containerdSocket}
address: 0.0.0.0
port: ${ports.port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${ports.healthz}
podLogsDir: ${s}/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${paths.caCert}}
authorization:
  mode: Webhook
registerNode: true
podCIDR: ${node.podCidr}
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
# Its own subtree (created beforehand in every hierarchy), so two kubelets on
# one machine stay out of each other's kubepods.
cgroupRoot: ${node.cgroupRoot}
# No KUBE-* iptables chains on a shared machine.
makeIPTablesUtilChains: false
protectKernelDefaults: false
nodeStatusReportFrequency: 10s
syncFrequency: 10s
`;
}

export function kubeletKubeconfig(
  apiServerUrl: string,
  caCert: string,
  cert: string,
  key: string,
): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "${apiServerUrl}", certificate-authority: "${caCert}"}
users:
- name: node
  user: {client-certificate: "${cert}", client-key: "${key}"}
contexts:
- name: node
  context: {cluster: local, user: node}
current-context: node
`;
}

/** Kernel settings the kubelet rewrites (protectKernelDefaults: false); saved and restored. */
export const KUBELET_SYSCTLS = [
  "vm.overcommit_memory",
  "vm.panic_on_oom",
  "kernel.panic",
  "kernel.panic_on_oops",
  "kernel.keys.root_maxkeys",
  "kernel.keys.root_maxbytes",
];
