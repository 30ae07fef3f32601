// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {GovernorTimelockControl} from "@openzeppelin/contracts/governance/extensions/GovernorTimelockControl.sol";
import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";

import {KeyregGovernorBase} from "./KeyregGovernor.sol";

/// @title KeyregTimelockGovernor: a keyreg DAO whose revocations wait in a TimelockController.
/// @notice Passed proposals are queued in the timelock and executed by it after its minimum delay,
/// so subjects name the *timelock's* address as their governor (it is what calls the registry).
/// The proposal id is bound into the calldata at queue time and again, identically, at execution.
/// The membership token names the timelock as its executor: membership changes wait like revocations.
contract KeyregTimelockGovernor is KeyregGovernorBase, GovernorTimelockControl {
    constructor(
        string memory name_,
        IVotes token_,
        address registry_,
        TimelockController timelock_,
        uint48 votingDelay_,
        uint32 votingPeriod_,
        uint256 proposalThreshold_,
        uint256 quorumPercent_
    )
        KeyregGovernorBase(name_, token_, registry_, votingDelay_, votingPeriod_, proposalThreshold_, quorumPercent_)
        GovernorTimelockControl(timelock_)
    {
        _requireOwnToken(address(timelock_)); // the timelock executes, so it changes membership
    }

    function _queueOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal virtual override(Governor, GovernorTimelockControl) returns (uint48) {
        return super._queueOperations(proposalId, targets, values, boundCalldatas(proposalId, calldatas), descriptionHash);
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal virtual override(Governor, GovernorTimelockControl) {
        super._executeOperations(proposalId, targets, values, boundCalldatas(proposalId, calldatas), descriptionHash);
    }

    // ------------------------------------------------------------------------------------------
    // Solidity's required overrides (no behaviour of their own)

    function propose(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description
    ) public virtual override(Governor, KeyregGovernorBase) returns (uint256) {
        return super.propose(targets, values, calldatas, description);
    }

    function execute(address[] memory targets, uint256[] memory values, bytes[] memory calldatas, bytes32 descriptionHash)
        public
        payable
        virtual
        override(Governor, KeyregGovernorBase)
        returns (uint256)
    {
        return super.execute(targets, values, calldatas, descriptionHash);
    }

    receive() external payable virtual override(Governor, KeyregGovernorBase) {
        revert GovernorDisabledDeposit();
    }

    function onERC721Received(address a, address b, uint256 c, bytes memory d)
        public
        virtual
        override(Governor, KeyregGovernorBase)
        returns (bytes4)
    {
        return super.onERC721Received(a, b, c, d);
    }

    function onERC1155Received(address a, address b, uint256 c, uint256 d, bytes memory e)
        public
        virtual
        override(Governor, KeyregGovernorBase)
        returns (bytes4)
    {
        return super.onERC1155Received(a, b, c, d, e);
    }

    function onERC1155BatchReceived(address a, address b, uint256[] memory c, uint256[] memory d, bytes memory e)
        public
        virtual
        override(Governor, KeyregGovernorBase)
        returns (bytes4)
    {
        return super.onERC1155BatchReceived(a, b, c, d, e);
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        virtual
        override(Governor, KeyregGovernorBase)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }

    function proposalThreshold() public view virtual override(Governor, KeyregGovernorBase) returns (uint256) {
        return super.proposalThreshold();
    }

    function state(uint256 proposalId)
        public
        view
        virtual
        override(Governor, GovernorTimelockControl)
        returns (ProposalState)
    {
        return super.state(proposalId);
    }

    function proposalNeedsQueuing(uint256 proposalId)
        public
        view
        virtual
        override(Governor, GovernorTimelockControl)
        returns (bool)
    {
        return super.proposalNeedsQueuing(proposalId);
    }

    function _cancel(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal virtual override(Governor, GovernorTimelockControl) returns (uint256) {
        return super._cancel(targets, values, calldatas, descriptionHash);
    }

    function _executor() internal view virtual override(Governor, GovernorTimelockControl) returns (address) {
        return super._executor();
    }
}
