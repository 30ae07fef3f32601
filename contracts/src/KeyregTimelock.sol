// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title KeyregTimelock: the OpenZeppelin TimelockController, under a name that gets an artifact.
/// @notice Deployed by `keyreg gov deploy --timelock-delay S` with the governor as its only
/// proposer and canceller, anyone as executor, and no admin (node/gov/deploy.py): after
/// deployment nobody but a passed proposal can schedule anything in it.
contract KeyregTimelock is TimelockController {
    constructor(uint256 minDelay, address[] memory proposers, address[] memory executors, address admin)
        TimelockController(minDelay, proposers, executors, admin)
    {}
}
