import type Docker from 'dockerode';

export interface ContainerUsage {
  samples: number;
  cpuPercent: { mean: number; max: number };
  memoryBytes: { mean: number; max: number };
}

interface StatsFrame {
  cpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; stats?: { inactive_file?: number; cache?: number } };
}

/**
 * Samples a container's CPU and memory (Docker stats, about once a second)
 * until stop() is called. CPU is in percent of one core, as `docker stats` shows it.
 */
export async function sampleContainerUsage(docker: Docker, id: string): Promise<{ stop: () => ContainerUsage }> {
  const cpu: number[] = [];
  const memory: number[] = [];
  const stream = (await docker.getContainer(id).stats({ stream: true })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  let buffered = '';
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (!line.trim()) continue;
      const frame = JSON.parse(line) as StatsFrame;
      const cpuDelta = (frame.cpu_stats?.cpu_usage?.total_usage ?? 0) - (frame.precpu_stats?.cpu_usage?.total_usage ?? 0);
      const systemDelta = (frame.cpu_stats?.system_cpu_usage ?? 0) - (frame.precpu_stats?.system_cpu_usage ?? 0);
      if (systemDelta > 0 && frame.precpu_stats?.system_cpu_usage) cpu.push((cpuDelta / systemDelta) * (frame.cpu_stats?.online_cpus ?? 1) * 100);
      const usage = frame.memory_stats?.usage;
      if (usage !== undefined) memory.push(usage - (frame.memory_stats?.stats?.inactive_file ?? frame.memory_stats?.stats?.cache ?? 0));
    }
  });
  stream.on('error', () => undefined);
  const summary = (values: number[]) => ({
    mean: values.length ? values.reduce((s, v) => s + v, 0) / values.length : 0,
    max: values.length ? Math.max(...values) : 0,
  });
  return {
    stop() {
      stream.destroy();
      return { samples: Math.max(cpu.length, memory.length), cpuPercent: summary(cpu), memoryBytes: summary(memory) };
    },
  };
}
